"""The conformal guarantee where it holds and where it breaks: a run's sets (and its out-of-domain threshold within a
flag budget) fitted on its validation cells, scored on its held-back test split and on another laboratory's cells;
then the same sets recalibrated on K labelled cells per class of that laboratory, scored on its other cells.

    python benchmarks/conformal_guarantee.py RUN --other ../shared/data/chula-wbc --alpha 0.05 --budget 0.05 \
        --shots 5 10 20 --seeds 0 1 2 --json results/conformal_guarantee.json

The run is copied first (fitting rewrites its conformal.json and out-of-domain threshold; the run given is left as it
is). For each set of cells: n, accuracy, the sets' coverage (the true class in the set; also per class), the share flagged (review bin,
a set not of one class, out of domain), the share wrong and let through (the guarantee bounds it by α on cells like
the calibration cells), with 95 % Wilson intervals; each row records its command, device and date. Recalibration
refits the sets and the out-of-domain threshold (within the same budget when it fits, else at α alone) on the K shots,
without retraining, and scores the laboratory's remaining cells; the temperature is kept.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from neunn.data.scan import scan_dataset
from neunn.data.split import load_split
from neunn.errors import NeunnError
from neunn.inference.predictor import Predictor
from neunn.rundir import RunDir
from neunn.training.conformal_fit import fit_conformal
from ood_methods import wilson  # benchmarks/: the Wilson interval of a share


def _share(mask: np.ndarray) -> dict:
    k, n = int(mask.sum()), len(mask)
    low, high = wilson(k, n)
    return {"value": k / n if n else None, "k": k, "n": n, "low": max(0.0, low), "high": min(1.0, high)}


def score(run: Path, files: list[tuple[Path, str]]) -> dict:
    """What the run's predictor, as in use, does with labelled cells: the guarantee's figures."""
    predictor = Predictor.from_run(run)
    truth = {str(path): label for path, label in files}
    rows = [p for p in predictor.predict_files([path for path, _ in files], workers=1) if p.error is None]
    true = np.array([truth[p.path] for p in rows])
    correct = np.array([p.label == t for p, t in zip(rows, true)])
    covered = np.array([t in (p.prediction_set or "").split("|") for p, t in zip(rows, true)])
    review = np.array([bool(p.needs_review) for p in rows])
    ood = np.array([bool(p.out_of_domain) for p in rows])
    flagged = review | ood
    per_class = {label: _share(covered[true == label]) for label in sorted(set(true))}
    return {"n": len(rows), "accuracy": _share(correct), "coverage": _share(covered), "coverage_per_class": per_class,
            "flagged": _share(flagged), "out_of_domain": _share(ood),
            "wrong_and_unflagged": _share(~correct & ~flagged),
            "accuracy_unflagged": _share(correct[~flagged]) if (~flagged).any() else None}


def _fit(run: Path, alpha: float, budget: float | None, per_class: bool, data: Path | None) -> dict:
    try:
        sets = fit_conformal(run, alpha=alpha, class_conditional=per_class, data_dir=data, flag_budget=budget)
        return {"flag_budget": budget, **sets.fitted_on.get("flag_budget", {})}
    except NeunnError as exc:  # the budget does not fit: the sets at α alone, said so
        sets = fit_conformal(run, alpha=alpha, class_conditional=per_class, data_dir=data)
        return {"flag_budget": None, "budget_refused": str(exc)}


def _command(args: argparse.Namespace) -> str:
    """The command that made the record, with the run and the data named as docs/results.md names them (runs/NAME,
    data/NAME) rather than by where they were on the machine that ran it."""
    named = {str(args.run): f"runs/{args.run.name}", **{str(o): f"data/{o.name}" for o in args.other}}
    if args.json is not None:
        named[str(args.json)] = f"results/{args.json.name}"
    return " ".join(["python benchmarks/" + Path(sys.argv[0]).name, *(named.get(a, a) for a in sys.argv[1:])])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--other", type=Path, action="append", default=[], help="another laboratory's cells")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--budget", type=float, default=0.05)
    parser.add_argument("--per-class", action="store_true")
    parser.add_argument("--shots", type=int, nargs="*", default=[5, 10, 20])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source = RunDir(args.run)
    source.require_trained()
    data_dir = Path(source.read_info()["data_dir"])
    test = [(data_dir / e.path, e.label) for e in load_split(source.splits).splits["test"]]
    cpu = platform.processor() or platform.machine()
    record = {"command": _command(args),
              "device": f"CPU ({cpu}), {args.threads} thread(s)", "date": datetime.date.today().isoformat(),
              "run": source.root.name, "alpha": args.alpha, "budget": args.budget, "per_class": args.per_class,
              "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        def fresh_copy(name: str) -> Path:  # every fit starts from the run as given
            return Path(shutil.copytree(source.root, Path(tmp) / name, ignore=shutil.ignore_patterns("eval", "export")))

        run = fresh_copy("run")
        fit = _fit(run, args.alpha, args.budget, args.per_class, None)
        sets = {"held-back test split (same lab)": test}
        for other in args.other:
            scan = scan_dataset(other)
            sets[f"{other.name} (another lab)"] = [(other / r.path, r.label) for r in scan.images]
        for name, files in sets.items():
            record["rows"].append({"cells": name, "calibrated_on": "the run's validation split", "fit": fit,
                                   **score(run, files)})
            print(name, json.dumps(record["rows"][-1]["wrong_and_unflagged"]), flush=True)
        for other in args.other:
            by_class: dict[str, list] = {}
            for r in scan_dataset(other).images:
                by_class.setdefault(r.label, []).append(other / r.path)
            for k in args.shots:
                for seed in args.seeds:
                    rng = random.Random(seed)
                    shots_dir = Path(tmp) / f"shots-{k}-{seed}"
                    rest = []
                    for label, paths in by_class.items():
                        chosen = set(rng.sample(sorted(paths), min(k, len(paths) - 1)))
                        (shots_dir / label).mkdir(parents=True)
                        for path in chosen:
                            (shots_dir / label / path.name).symlink_to(path.resolve())
                        rest += [(p, label) for p in paths if p not in chosen]
                    local = fresh_copy(f"run-{k}-{seed}")
                    fit = _fit(local, args.alpha, args.budget, args.per_class, shots_dir)
                    record["rows"].append({"cells": f"{other.name} (another lab), the cells not used to recalibrate",
                                           "calibrated_on": f"{k} labelled cells per class of {other.name}",
                                           "shots": k, "seed": seed, "fit": fit, **score(local, rest)})
                    shutil.rmtree(local)
                    print(k, seed, json.dumps(record["rows"][-1]["wrong_and_unflagged"]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
