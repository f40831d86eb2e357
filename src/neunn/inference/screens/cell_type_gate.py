"""The cell-type gate: a second model, trained on every cell type of the laboratory, in front of a model of one type.

    set_gate("runs/vacuoles", "runs/pbc", scope=["neutrophil"])   # writes RunDir.gate_file (the gate's path and hash)
    read_gate(RunDir("runs/vacuoles"))                              # GateRecord(run, scope), checked; or None
    predictor = Predictor.from_run("runs/vacuoles")                 # loads the gate with the run
    p = next(predictor.predict_files(["cell.jpg"]))                 # p.cell_type "eosinophil", p.out_of_scope True,
                                                                    # p.out_of_domain True: not a cell it knows

A model that only ever learnt normal from vacuolated neutrophils has no reason to tell an eosinophil from a
neutrophil, and its out-of-domain score, fitted on neutrophils, lets many other cell types through
(docs/results.md). A gate that knows the cell types answers that question directly: a cell whose gate class is not in
``scope`` is out of scope, and an out-of-scope cell is flagged out of domain, with the gate's class beside it
(``cell_type``) so the reviewer sees why. The gate never changes the finding model's class or probabilities.

The gate is recorded in the run folder by path, with the SHA-256 of its weights: a gate that has been retrained, moved
or deleted is refused in one sentence rather than silently replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neunn.atomic import write_text_atomic
from neunn.checkpoint import read_checkpoint_meta
from neunn.data.cell_regions import FullImage
from neunn.errors import NeunnError
from neunn.inference.onnx_engine import file_sha256
from neunn.inference.screens.base import Screen, ScreenBatch, ScreenCall
from neunn.rundir import RunDir


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
    write_text_atomic(run.gate_file, json.dumps(record, indent=1))
    return record


def remove_gate(run_dir: str | Path) -> bool:
    """Remove the run's cell-type gate; whether there was one."""
    return CellTypeGate.remove(RunDir(Path(run_dir)))


def read_gate(run: RunDir) -> GateRecord | None:
    """The run's cell-type gate, checked to be the one that was set; None when the run has none."""
    if not run.gate_file.is_file():
        return None
    record = json.loads(run.gate_file.read_text())
    gate = RunDir(Path(record["run"]))
    weights = _weights(gate)
    if not weights.is_file() or file_sha256(weights) != record["weights_sha256"]:
        raise NeunnError(f"The cell-type gate of {run.root} ({gate.root}) is missing or has changed since it was "
                         f"set; set it again with `neunn screen fit cell-type-gate {run.root} GATE_RUN --scope ...` "
                         f"or remove it with `neunn screen remove {run.root} cell_type_gate`.")
    return GateRecord(gate.root, tuple(record["scope"]))


class CellTypeGate(Screen):
    """The gate's predictor and the gate classes that the model is for."""

    name = "cell_type_gate"
    title = "cell-type gate"
    effect = "out_of_domain"
    value_field = "cell_type"
    value_type = str
    flag_field = "out_of_scope"
    csv_column = "cell_type"

    def __init__(self, predictor, scope: tuple[str, ...]) -> None:
        self.predictor, self.scope = predictor, tuple(scope)

    @classmethod
    def load(cls, run: RunDir, *, checkpoint: str, open_run) -> CellTypeGate | None:
        record = read_gate(run)
        return None if record is None else cls(open_run(record.run), record.scope)

    @classmethod
    def files(cls, run: RunDir) -> list:
        return [run.gate_file]

    def prepare(self, cell: FullImage, source, transformed: bool) -> torch.Tensor:
        """The cell prepared as the gate was trained (its own size, crop and decoding)."""
        return self.predictor.prepare_input(source, cell.image, transformed)

    def cell_types(self, pixels: torch.Tensor) -> list[str]:
        """The gate's class for each cell of an N×3×S×S batch prepared for the gate."""
        probs = self.predictor.probabilities(pixels)
        return [self.predictor.classes[int(i)] for i in probs.argmax(axis=1)]

    def in_scope(self, cell_type: str) -> bool:
        return cell_type in self.scope

    def call(self, batch: ScreenBatch) -> list[ScreenCall]:
        return [ScreenCall(t, not self.in_scope(t)) for t in self.cell_types(torch.stack(list(batch.prepared)))]

    def describe(self) -> dict[str, Any]:
        run = self.predictor.run
        return {"run": str(run.root) if run is not None else None, "scope": list(self.scope),
                "classes": list(self.predictor.classes), "arch": self.predictor.meta.get("arch")}
