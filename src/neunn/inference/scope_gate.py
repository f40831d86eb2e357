"""A cell-type gate: a second model, trained on every cell type of the laboratory, in front of a model of one cell type.

    set_gate("runs/vacuoles", "runs/pbc", scope=["neutrophil"])   # writes runs/vacuoles/gate.json
    read_gate(RunDir("runs/vacuoles"))                              # GateRecord(run, scope), checked; or None
    predictor = Predictor.from_run("runs/vacuoles")                 # loads the gate with the run (a ScopeGate)
    p = predictor.predict_files(["cell.jpg"])                       # p.cell_type "eosinophil", p.out_of_scope True,
                                                                    # p.out_of_domain True: not a cell it knows
    remove_gate("runs/vacuoles")

A model that only ever learnt normal from vacuolated neutrophils has no reason to tell an eosinophil from a neutrophil:
its out-of-domain score, fitted on neutrophils, flagged 76-87 % of the lab's other cell types (docs/results.md §5). A
gate that knows the cell types answers that question directly: a cell whose gate class is not in ``scope`` is out of
scope, and an out-of-scope cell is flagged out of domain, with the gate's class beside it (``cell_type``) so the
reviewer sees why. The gate never changes the finding model's class or probabilities.

The gate is recorded in the run folder by path, with the SHA-256 of its weights: a gate that has been retrained, moved
or deleted is refused in one sentence rather than silently replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neunn.atomic import write_text_atomic
from neunn.checkpoint import read_checkpoint_meta
from neunn.errors import NeunnError
from neunn.inference.onnx_engine import file_sha256
from neunn.rundir import RunDir

GATE_FILE = "gate.json"


def _weights(run: RunDir) -> Path:
    return run.checkpoint("best").with_suffix(".safetensors")


@dataclass(frozen=True)
class GateRecord:
    """A run's cell-type gate as recorded in its folder: the gate run and the gate classes the run is for."""

    run: Path
    scope: tuple[str, ...]


def set_gate(run_dir: str | Path, gate_run: str | Path, *, scope: Iterable[str]) -> dict[str, Any]:
    """Record ``gate_run`` as the cell-type gate of ``run_dir``; ``scope`` are gate classes the run is for."""
    run, gate = RunDir(Path(run_dir)), RunDir(Path(gate_run))
    run.require_trained()
    gate.require_trained()
    if gate.root.resolve() == run.root.resolve():
        raise NeunnError("A run cannot be its own cell-type gate; give a model trained on every cell type.")
    classes = list(read_checkpoint_meta(_weights(gate))["classes"])
    scope = list(dict.fromkeys(s.strip() for s in scope if s.strip()))
    unknown = [s for s in scope if s not in classes]
    if not scope or unknown:
        raise NeunnError(f"The scope must be classes of the gate ({', '.join(classes)}), got "
                         f"'{unknown[0] if unknown else ''}'.")
    if set(scope) == set(classes):
        raise NeunnError("A scope of every gate class would never flag a cell; name the cell type(s) the run is for.")
    record = {"run": str(gate.root.resolve()), "scope": scope, "weights_sha256": file_sha256(_weights(gate))}
    write_text_atomic(run.root / GATE_FILE, json.dumps(record, indent=1))
    return record


def remove_gate(run_dir: str | Path) -> bool:
    """Remove the run's cell-type gate; whether there was one."""
    path = Path(run_dir) / GATE_FILE
    if not path.is_file():
        return False
    path.unlink()
    return True


def read_gate(run: RunDir) -> GateRecord | None:
    """The run's cell-type gate, checked to be the one that was set; None when the run has none."""
    path = run.root / GATE_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    gate = RunDir(Path(record["run"]))
    weights = _weights(gate)
    if not weights.is_file() or file_sha256(weights) != record["weights_sha256"]:
        raise NeunnError(f"The cell-type gate of {run.root} ({gate.root}) is missing or has changed since it was "
                         f"set; set it again with `neunn ood gate {run.root} GATE_RUN --scope ...` or remove it "
                         "with `--remove`.")
    return GateRecord(gate.root, tuple(record["scope"]))
