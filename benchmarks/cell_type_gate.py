"""Would a cell-type gate in front of a one-cell-type finding model flag the other cell types? Measured before building.

A model of neutrophils only (normal / vacuolated) has an out-of-domain score fitted on neutrophils; docs/results.md §5
found that it flags 76 % of the lab's other cell types, not the 95 % asked for. A gate is a second model, trained on
every cell type of the lab, whose top class must be the finding model's cell type for the finding to be trusted. This
script scores the gate's own test split (cells the gate never trained on) with the finding model behind the gate, as
`neunn screen fit cell-type-gate FINDING_RUN GATE_RUN --scope CLASS` sets it up, and counts, per true class, the cells flagged by the
finding model's own out-of-domain score, by the gate, and by either (the `out_of_domain` column of a gated run).

    PYTHONPATH=src python benchmarks/cell_type_gate.py GATE_RUN FINDING_RUN ../shared/data/pbc-dev \
        --scope neutrophil [--findings ../shared/data/neutro-vac-dev] [--threads 1]

With --findings (the finding model's own dataset), it also reports how many cells of each finding class the gate would
send out of scope: a gate that calls vacuolated neutrophils monocytes would hide the very finding.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from neunn.data.scan import scan_dataset
from neunn.data.split import load_split
from neunn.inference.predictor import Predictor
from neunn.inference.screens.cell_type_gate import CellTypeGate
from neunn.rundir import RunDir


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of k of n, in %."""
    if n == 0:
        return float("nan"), float("nan")
    z, p = 1.96, k / n
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return 100 * (centre - half) / (1 + z * z / n), 100 * (centre + half) / (1 + z * z / n)


def share(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{100 * k / n:.1f} [{low:.1f}, {high:.1f}]" if n else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gate_run", type=Path)
    parser.add_argument("finding_run", type=Path)
    parser.add_argument("data", type=Path, help="the gate's dataset: its test split is scored")
    parser.add_argument("--scope", required=True, help="the gate's class that the finding model is for")
    parser.add_argument("--findings", type=Path, help="the finding model's dataset, to see what the gate does to it")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    # The gated predictor `neunn screen fit cell-type-gate` would give, built here so that the finding run's folder is not written.
    gate = Predictor.from_run(args.gate_run, gate=False)
    finding = Predictor.from_run(args.finding_run, gate=False)
    finding.screens = [s for s in finding.screens if s.name != CellTypeGate.name] + [CellTypeGate(gate, (args.scope,))]
    test = load_split(RunDir(args.gate_run).splits).splits["test"]
    predictions = list(finding.predict_files([args.data / e.path for e in test], workers=1))
    gate_labels = [p.cell_type for p in predictions]
    ood = [bool(finding.ood.flags(np.asarray([p.ood_score]))[0]) for p in predictions]  # the finding model's own
    assert all(p.out_of_domain == (o or p.out_of_scope) for p, o in zip(predictions, ood))
    rows, counts = [], {}
    for cls in sorted({e.label for e in test}):
        idx = [i for i, e in enumerate(test) if e.label == cls]
        n = len(idx)
        by_ood = sum(ood[i] for i in idx)
        by_gate = sum(gate_labels[i] != args.scope for i in idx)
        either = sum(ood[i] or gate_labels[i] != args.scope for i in idx)
        counts[cls] = {"n": n, "ood": by_ood, "gate": by_gate, "either": either}
        rows.append(f"| {cls}{' (in scope)' if cls == args.scope else ''} | {n} | {share(by_ood, n)} | "
                    f"{share(by_gate, n)} | {share(either, n)} |")
    others = [c for c in counts if c != args.scope]
    total = {k: sum(counts[c][k] for c in others) for k in ("n", "ood", "gate", "either")}
    rows.append(f"| **all other cell types** | {total['n']} | {share(total['ood'], total['n'])} | "
                f"{share(total['gate'], total['n'])} | {share(total['either'], total['n'])} |")
    print(f"gate {args.gate_run}, finding model {args.finding_run}, {len(test)} test cells of {args.data}\n")
    print("| true class | cells | flagged out of domain by the finding model, % | out of scope by the gate, % | "
          "either, % |\n|---|---|---|---|---|")
    print("\n".join(rows))
    result = {"gate": str(args.gate_run), "finding": str(args.finding_run), "scope": args.scope, "counts": counts}
    if args.findings:
        scan = scan_dataset(args.findings)
        called = Counter()
        for record, p in zip(scan.images, gate.predict_files([args.findings / r.path for r in scan.images],
                                                              workers=1)):
            called[(record.label, p.label)] += 1
        print("\nThe gate on the finding model's own dataset (cells the gate may have trained on):\n")
        for label in scan.classes:
            n = sum(v for (t, _), v in called.items() if t == label)
            out = sum(v for (t, g), v in called.items() if t == label and g != args.scope)
            print(f"- {label}: {out} of {n} out of scope ({share(out, n)} %); called "
                  + ", ".join(f"{g} {v}" for (t, g), v in sorted(called.items()) if t == label))
        result["findings"] = {f"{t}->{g}": v for (t, g), v in called.items()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
