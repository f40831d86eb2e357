"""The one Predictor: a trained run's model plus its own preprocessing, used by evaluate, predict and serving.

    predictor = Predictor.from_run("runs/b7", backend="onnx", review_threshold=0.7, critical="GBI,BAC")
    for p in predictor.predict_files(paths):           # batched, decoded in a thread pool, memory bounded
        print(p.path, p.label, p.probability, p.critical, p.needs_review, p.out_of_domain, p.error)

Everything needed to rebuild the model and its input (architecture, class names, size, normalisation) comes from the
checkpoint's metadata, so nothing is repeated here. The decision policy (review threshold, critical classes) is the
model's default unless the caller overrides it (:mod:`neunn.inference.policy`). A run fitted with an out-of-domain
score (:mod:`neunn.inference.out_of_domain`) also flags cells unlike its training cells; ``out_of_domain`` is None
where the run (or an engine without features, e.g. an older ONNX file) has no such score.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from neunn.data.cytoplasm_pallor import cytoplasm_pallor
from neunn.data.image_io import UnreadableImage, load_rgb
from neunn.data.preprocess import image_to_uint8, load_pixels
from neunn.inference.backends import create_engine
from neunn.inference.engines import LogitsEngine
from neunn.inference.out_of_domain import OodScorer, load_out_of_domain
from neunn.inference.pallor_screen import PallorScreen, read_pallor_screen
from neunn.inference.policy import DecisionPolicy
from neunn.inference.scope_gate import read_gate
from neunn.inference.tta import dihedral_views
from neunn.rundir import RunDir


@dataclass
class DecodedCell:
    """One input read and prepared: the model's pixels (or why it could not be read), the gate's, its pallor."""

    name: str
    pixels: torch.Tensor | None = None
    error: str | None = None
    gate_pixels: torch.Tensor | None = None  # prepared as the cell-type gate was trained, when the run has a gate
    pallor: float | None = None  # the cytoplasm's pallor at full resolution, when the run has a pallor screen


@dataclass
class Prediction:
    """The result for one input: a class with its probability and top 3, or an error."""

    path: str
    label: str | None = None
    probability: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    probs: list[float] | None = None
    critical: bool = False
    needs_review: bool = False
    ood_score: float | None = None  # higher = further from the training cells; None without a fitted score
    out_of_domain: bool | None = None  # score above the run's threshold, or out of scope: "outside its experience"
    cell_type: str | None = None  # the cell-type gate's class (None without a gate)
    out_of_scope: bool | None = None  # the gate's class is not one the model is for (None without a gate)
    pallor: float | None = None  # the cytoplasm's pallor (None without a pallor screen)
    pale: bool | None = None  # pallor at or over the screen's threshold (None without a pallor screen)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "label": self.label, "probability": self.probability,
                "top": [{"label": c, "probability": p} for c, p in self.top], "critical": self.critical,
                "needs_review": self.needs_review, "out_of_domain": self.out_of_domain, "ood_score": self.ood_score,
                "cell_type": self.cell_type, "out_of_scope": self.out_of_scope, "pallor": self.pallor,
                "pale": self.pale, "error": self.error}


@dataclass
class ScopeGate:
    """A cell-type gate in front of a model (inference/scope_gate.py): the gate's predictor and the gate classes that
    the model is for."""

    predictor: Predictor
    scope: tuple[str, ...]

    def cell_types(self, pixels: torch.Tensor) -> list[str]:
        """The gate's class for each cell of an N×3×S×S batch prepared for the gate."""
        probs = self.predictor.probabilities(pixels)
        return [self.predictor.classes[int(i)] for i in probs.argmax(axis=1)]

    def in_scope(self, cell_type: str) -> bool:
        return cell_type in self.scope

    def as_dict(self) -> dict[str, Any]:
        run = self.predictor.run
        return {"run": str(run.root) if run is not None else None, "scope": list(self.scope),
                "classes": list(self.predictor.classes), "arch": self.predictor.meta.get("arch")}


class Predictor:
    """A trained classifier ready to score images."""

    def __init__(self, engine: LogitsEngine, *, tta: bool = False, policy: DecisionPolicy | None = None,
                 run: RunDir | None = None, checkpoint: str = "best", ood: OodScorer | None = None,
                 gate: ScopeGate | None = None, pallor_screen: PallorScreen | None = None) -> None:
        meta = engine.meta
        # An engine without features (an ONNX file exported before them) cannot give a feature-space score.
        self.ood = ood if ood is None or not ood.needs_features or getattr(engine, "has_features", True) else None
        self.engine, self.meta, self.tta = engine, meta, tta
        self.run, self.checkpoint = run, checkpoint  # where the model came from (heatmaps rebuild PyTorch from it)
        self.classes: list[str] = list(meta["classes"])
        self.img_size: int = int(meta["img_size"])
        self.policy = policy or DecisionPolicy.of_model(meta)
        self.temperature = float(meta.get("temperature", 1.0))
        self.jpeg_draft = bool(meta.get("jpeg_draft", False))  # decode as the run's training images were
        self.crop = float(meta.get("crop", 1.0))  # runs before the crop existed used the whole image
        self.gate = gate  # a cell-type gate in front of the model (inference/scope_gate.py), or None
        self.pallor_screen = pallor_screen  # a second look for a finding that pales the cytoplasm, or None

    @classmethod
    def from_run(cls, run_dir: str | Path, *, checkpoint: str = "best", backend: str = "torch", device: str = "cpu",
                 tta: bool = False, review_threshold: float | None = None,
                 critical: str | Iterable[str] | None = None, gate: bool = True) -> Predictor:
        """Load a run's checkpoint (``best`` or ``last``) with a backend (``neunn.BACKENDS``) onto a device.

        ``tta`` averages the probabilities over the 8 flips and 90° rotations of each cell (8× the compute);
        ``review_threshold`` and ``critical`` (e.g. ``"GBI,BAC"``) override the model's decision policy;
        ``gate=False`` leaves out the run's cell-type gate (``neunn ood gate``), if it has one.
        """
        run = RunDir(Path(run_dir))
        run.require_trained()
        engine = create_engine(run, checkpoint=checkpoint, backend=backend, device=device)
        policy = DecisionPolicy.of_model(engine.meta).overridden(review_threshold=review_threshold,
                                                                 critical=critical, classes=engine.meta["classes"])
        record = read_gate(run) if gate else None
        return cls(engine, tta=tta, policy=policy, run=run, checkpoint=checkpoint,
                   ood=load_out_of_domain(run, checkpoint), pallor_screen=read_pallor_screen(run),
                   gate=None if record is None else ScopeGate(cls.from_run(record.run, backend=backend, device=device,
                                                                           gate=False), record.scope))

    @property
    def backend(self) -> str:
        return self.engine.backend

    def screens(self) -> dict[str, Any]:
        """What besides the model flags cells: its cell-type gate and pallor screen (None for each it lacks)."""
        return {"cell_type_gate": self.gate.as_dict() if self.gate is not None else None,
                "pallor_screen": self.pallor_screen.as_dict() if self.pallor_screen is not None else None}

    def probabilities(self, pixels: torch.Tensor) -> np.ndarray:
        """Calibrated class probabilities for an N×3×S×S uint8 batch already at the model's input size."""
        return self.probabilities_and_ood(pixels)[0]

    def probabilities_and_ood(self, pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities and out-of-domain scores (None without a fitted score) for an N×3×S×S batch."""
        views = dihedral_views(pixels) if self.tta else [pixels]
        if self.ood is not None and self.ood.needs_features:
            logits, features = self.engine.outputs(views[0])
        else:
            logits, features = self.engine.logits(views[0]), None
        # The score is of the cell as it is (the identity view): its threshold was fitted on unaugmented cells.
        scores = self.ood.score(logits, features) if self.ood is not None else None
        logits = [logits, *(self.engine.logits(v) for v in views[1:])]
        probs = [torch.softmax(x.float() / self.temperature, dim=1) for x in logits]
        return torch.stack(probs).mean(0).numpy(), scores

    def _result(self, path: str, probs: np.ndarray, ood_score: float | None = None, cell_type: str | None = None,
                pallor: float | None = None) -> Prediction:
        order = np.argsort(-probs)
        label = self.classes[int(order[0])]
        out_of_domain = None if ood_score is None else bool(self.ood.flags(np.asarray([ood_score]))[0])
        out_of_scope = None if cell_type is None else not self.gate.in_scope(cell_type)
        if out_of_scope is not None:
            out_of_domain = bool(out_of_domain) or out_of_scope
        pale = None if pallor is None else self.pallor_screen.flags(pallor)
        needs_review = self.policy.needs_review(float(probs[order[0]]))
        if pale and label != self.pallor_screen.finding:  # pale enough for the finding the model did not call
            needs_review = True
        return Prediction(path=path, label=label, probability=float(probs[order[0]]),
                          top=[(self.classes[int(i)], float(probs[i])) for i in order[:3]],
                          probs=[float(p) for p in probs], critical=self.policy.is_critical(label),
                          needs_review=needs_review, ood_score=ood_score, out_of_domain=out_of_domain,
                          cell_type=cell_type, out_of_scope=out_of_scope, pallor=pallor, pale=pale)

    def _predict_decoded(self, decoded: list[DecodedCell]) -> list[Prediction]:
        """Predictions for decoded cells in order; one that could not be read gets its error."""
        results = [Prediction(path=cell.name, error=cell.error) if cell.error else None for cell in decoded]
        good = [i for i, cell in enumerate(decoded) if cell.error is None]
        if good:
            probs, scores = self.probabilities_and_ood(torch.stack([decoded[i].pixels for i in good]))
            cell_types = (self.gate.cell_types(torch.stack([decoded[i].gate_pixels for i in good]))
                          if self.gate is not None else [None] * len(good))
            for n, i in enumerate(good):
                results[i] = self._result(decoded[i].name, probs[n], None if scores is None else float(scores[n]),
                                          cell_types[n], decoded[i].pallor)
        return results

    def load_pixels(self, source: str | Path | bytes) -> torch.Tensor:
        """One image file (or its bytes) as model input: 3×S×S uint8, prepared as at training; raises UnreadableImage."""
        return load_pixels(source, self.img_size, jpeg_draft=self.jpeg_draft, crop=self.crop)

    def _prepare(self, source: str | Path | bytes, image: Image.Image | None, transformed: bool) -> torch.Tensor:
        """This model's input from the image already decoded at full size when that is what training saw (or when it
        was perturbed), else decoded from ``source`` as at training (e.g. a JPEG draft)."""
        if image is not None and (transformed or not self.jpeg_draft):
            return image_to_uint8(image, self.img_size, self.crop)
        return self.load_pixels(source)

    def _decode(self, name: str, source: str | Path | bytes,
                transform: Callable[[Image.Image], Image.Image] | None = None) -> DecodedCell:
        """One input prepared for the model (and for the gate, and its pallor, when the run has them), or its error.
        The file is decoded at full size at most once: perturbations and the pallor are defined on that image."""
        try:
            cell, image = DecodedCell(name), None
            if transform is not None or self.pallor_screen is not None:
                image = load_rgb(source).image
                image = transform(image) if transform is not None else image
                if self.pallor_screen is not None:
                    cell.pallor = cytoplasm_pallor(np.asarray(image))
            cell.pixels = self._prepare(source, image, transform is not None)
            if self.gate is not None:
                cell.gate_pixels = self.gate.predictor._prepare(source, image, transform is not None)
            return cell
        except (UnreadableImage, OSError) as exc:
            return DecodedCell(name, error=str(exc))

    def predict_sources(self, sources: Sequence[tuple[str, str | Path | bytes]]) -> list[Prediction]:
        """Predict a batch of (name, path-or-bytes) pairs; an unreadable one gets an error, the others still run."""
        return self._predict_decoded([self._decode(name, source) for name, source in sources])

    def predict_files(self, paths: Iterable[str | Path], *, batch_size: int = 64, workers: int = 2,
                      transform: Callable[[Image.Image], Image.Image] | None = None) -> Iterator[Prediction]:
        """Stream predictions for many files: decoding of the next batch overlaps inference of this one.

        ``transform`` (e.g. a robustness perturbation) is applied to each decoded image before preprocessing.
        """
        paths = iter(paths)
        with ThreadPoolExecutor(max_workers=max(1, min(workers, os.cpu_count() or 1))) as pool:
            pending = [pool.submit(self._decode, str(p), p, transform) for p in islice(paths, batch_size)]
            while pending:
                following = [pool.submit(self._decode, str(p), p, transform) for p in islice(paths, batch_size)]
                yield from self._predict_decoded([f.result() for f in pending])
                pending = following
