"""The one Predictor: a trained run's model plus its own preprocessing, used by evaluate, predict and serving.

    predictor = Predictor.from_run("runs/b7", backend="onnx", review_threshold=0.7, critical="GBI,BAC")
    for p in predictor.predict_files(paths):           # batched, decoded in a thread pool, memory bounded
        print(p.path, p.label, p.probability, p.critical, p.needs_review, p.error)

Everything needed to rebuild the model and its input (architecture, class names, size, normalisation) comes from the
checkpoint's metadata, so nothing is repeated here. The decision policy (review threshold, critical classes) is the
model's default unless the caller overrides it (:mod:`neunn.inference.policy`).
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

from neunn.data.image_io import UnreadableImage, load_rgb
from neunn.data.preprocess import image_to_uint8, load_pixels
from neunn.inference.backends import create_engine
from neunn.inference.engines import LogitsEngine
from neunn.inference.policy import DecisionPolicy
from neunn.inference.tta import dihedral_views
from neunn.rundir import RunDir


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
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "label": self.label, "probability": self.probability,
                "top": [{"label": c, "probability": p} for c, p in self.top], "critical": self.critical,
                "needs_review": self.needs_review, "error": self.error}


class Predictor:
    """A trained classifier ready to score images."""

    def __init__(self, engine: LogitsEngine, *, tta: bool = False, policy: DecisionPolicy | None = None,
                 run: RunDir | None = None, checkpoint: str = "best") -> None:
        meta = engine.meta
        self.engine, self.meta, self.tta = engine, meta, tta
        self.run, self.checkpoint = run, checkpoint  # where the model came from (heatmaps rebuild PyTorch from it)
        self.classes: list[str] = list(meta["classes"])
        self.img_size: int = int(meta["img_size"])
        self.policy = policy or DecisionPolicy.of_model(meta)
        self.temperature = float(meta.get("temperature", 1.0))
        self.jpeg_draft = bool(meta.get("jpeg_draft", False))  # decode as the run's training images were

    @classmethod
    def from_run(cls, run_dir: str | Path, *, checkpoint: str = "best", backend: str = "torch", device: str = "cpu",
                 tta: bool = False, review_threshold: float | None = None,
                 critical: str | Iterable[str] | None = None) -> Predictor:
        """Load a run's checkpoint (``best`` or ``last``) with a backend (``neunn.BACKENDS``) onto a device.

        ``tta`` averages the probabilities over the 8 flips and 90° rotations of each cell (8× the compute);
        ``review_threshold`` and ``critical`` (e.g. ``"GBI,BAC"``) override the model's decision policy.
        """
        run = RunDir(Path(run_dir))
        run.require_trained()
        engine = create_engine(run, checkpoint=checkpoint, backend=backend, device=device)
        policy = DecisionPolicy.of_model(engine.meta).overridden(review_threshold=review_threshold,
                                                                 critical=critical, classes=engine.meta["classes"])
        return cls(engine, tta=tta, policy=policy, run=run, checkpoint=checkpoint)

    @property
    def backend(self) -> str:
        return self.engine.backend

    def probabilities(self, pixels: torch.Tensor) -> np.ndarray:
        """Calibrated class probabilities for an N×3×S×S uint8 batch already at the model's input size."""
        views = dihedral_views(pixels) if self.tta else [pixels]
        probs = [torch.softmax(self.engine.logits(v).float() / self.temperature, dim=1) for v in views]
        return torch.stack(probs).mean(0).numpy()

    def _result(self, path: str, probs: np.ndarray) -> Prediction:
        order = np.argsort(-probs)
        label = self.classes[int(order[0])]
        return Prediction(path=path, label=label, probability=float(probs[order[0]]),
                          top=[(self.classes[int(i)], float(probs[i])) for i in order[:3]],
                          probs=[float(p) for p in probs], critical=self.policy.is_critical(label),
                          needs_review=self.policy.needs_review(float(probs[order[0]])))

    def _predict_decoded(self, decoded: list[tuple[str, torch.Tensor | str]]) -> list[Prediction]:
        """Predictions for (name, pixels) pairs in order; a pair holding an error message instead gets that error."""
        good = [i for i, (_, px) in enumerate(decoded) if isinstance(px, torch.Tensor)]
        results = [Prediction(path=name, error=px) if isinstance(px, str) else None for name, px in decoded]
        if good:
            probs = self.probabilities(torch.stack([decoded[i][1] for i in good]))
            for i, pr in zip(good, probs):
                results[i] = self._result(decoded[i][0], pr)
        return results

    def load_pixels(self, source: str | Path | bytes) -> torch.Tensor:
        """One image file (or its bytes) as model input: 3×S×S uint8, prepared as at training; raises UnreadableImage."""
        return load_pixels(source, self.img_size, jpeg_draft=self.jpeg_draft)

    def _decode(self, name: str, source: str | Path | bytes,
                transform: Callable[[Image.Image], Image.Image] | None = None) -> tuple[str, torch.Tensor | str]:
        try:
            if transform is None:
                return name, self.load_pixels(source)
            # A perturbation is defined on the full-resolution image (e.g. a blur radius in its pixels).
            return name, image_to_uint8(transform(load_rgb(source).image), self.img_size)
        except (UnreadableImage, OSError) as exc:
            return name, str(exc)

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
