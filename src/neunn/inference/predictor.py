"""The one Predictor: a trained run's model plus its own preprocessing and screens, used by evaluate, predict and
serving.

    predictor = Predictor.from_run("runs/b7", backend="onnx", review_threshold=0.7, critical="GBI,BAC")
    for p in predictor.predict_files(paths):           # batched, decoded in a thread pool, memory bounded
        print(p.path, p.label, p.probability, p.critical, p.needs_review, p.out_of_domain, p.screens, p.error)

Everything needed to rebuild the model and its input (architecture, class names, size, normalisation) comes from the
checkpoint's metadata, so nothing is repeated here. The decision policy (review threshold, critical classes) is the
model's default unless the caller overrides it (:mod:`neunn.inference.policy`). The run's screens
(:mod:`neunn.inference.screens`: the out-of-domain score, the cell-type gate, the pallor screen, ...) are loaded from
its folder and applied to every cell; each prediction carries their calls in one mapping, ``screens``, and its
``out_of_domain`` and ``needs_review`` say what they decided (``out_of_domain`` is None when the run has no screen of
that effect, e.g. an older run or an ONNX file without features).
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

from neunn.data.cell_regions import FullImage
from neunn.data.image_io import UnreadableImage, load_rgb
from neunn.data.preprocess import image_to_uint8, load_pixels
from neunn.inference.backends import create_engine
from neunn.inference.cell_record import CellResult, record_of
from neunn.inference.engines import LogitsEngine
from neunn.inference.out_of_domain import OodScorer
from neunn.inference.policy import DecisionPolicy
from neunn.inference.screens import SCREENS, Screen, ScreenBatch, ScreenCall
from neunn.inference.screens.out_of_domain import OutOfDomainScreen
from neunn.inference.tta import dihedral_views
from neunn.rundir import RunDir

_FIELDS = {name: (kind.name, attr) for kind in SCREENS.values()
           for name, attr in ((kind.value_field, "value"), (kind.flag_field, "flagged")) if name}


@dataclass
class DecodedCell:
    """One input read and prepared: the model's pixels (or why it could not be read), and what each screen prepared
    from the same decode."""

    name: str
    pixels: torch.Tensor | None = None
    error: str | None = None
    prepared: dict[str, Any] = field(default_factory=dict)  # screen name → its ``prepare`` of this cell


@dataclass
class Prediction:
    """The result for one input: a class with its probability and top 3, what the screens said, or an error.

    Each screen's flat fields (``ood_score``, ``cell_type``, ``out_of_scope``, ``pallor``, ``pale``...) read from
    ``screens`` as attributes: None where the run has no such screen."""

    path: str
    label: str | None = None
    probability: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    probs: list[float] | None = None
    critical: bool = False
    needs_review: bool = False
    out_of_domain: bool | None = None  # a screen of that effect flags the cell: "outside the model's experience"
    screens: dict[str, ScreenCall] = field(default_factory=dict)  # screen name → its call on this cell
    error: str | None = None

    def __getattr__(self, name: str) -> Any:
        if name in _FIELDS:
            screen, attr = _FIELDS[name]
            call = self.__dict__.get("screens", {}).get(screen)
            return None if call is None else getattr(call, attr)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def record(self, classes: list[str] | None = None) -> CellResult:
        """This prediction as the per-cell record (:mod:`neunn.inference.cell_record`); ``classes``, the model's,
        name its probabilities."""
        return record_of(self, classes)

    def as_dict(self, classes: list[str] | None = None) -> dict[str, Any]:
        return self.record(classes).model_dump()


class Predictor:
    """A trained classifier ready to score images, with the screens of its run."""

    def __init__(self, engine: LogitsEngine, *, tta: bool = False, policy: DecisionPolicy | None = None,
                 run: RunDir | None = None, checkpoint: str = "best", screens: Sequence[Screen] = ()) -> None:
        meta = engine.meta
        self.engine, self.meta, self.tta = engine, meta, tta
        self.run, self.checkpoint = run, checkpoint  # where the model came from (heatmaps rebuild PyTorch from it)
        self.classes: list[str] = list(meta["classes"])
        self.img_size: int = int(meta["img_size"])
        self.policy = policy or DecisionPolicy.of_model(meta)
        self.temperature = float(meta.get("temperature", 1.0))
        self.jpeg_draft = bool(meta.get("jpeg_draft", False))  # decode as the run's training images were
        self.crop = float(meta.get("crop", 1.0))  # runs before the crop existed used the whole image
        # An engine without features (an ONNX file exported before them) cannot run a feature-space screen.
        has_features = getattr(engine, "has_features", True)
        self.screens: list[Screen] = [s for s in screens if has_features or not s.needs_features]

    @classmethod
    def from_run(cls, run_dir: str | Path, *, checkpoint: str = "best", backend: str = "torch", device: str = "cpu",
                 tta: bool = False, review_threshold: float | None = None,
                 critical: str | Iterable[str] | None = None, gate: bool = True) -> Predictor:
        """Load a run's checkpoint (``best`` or ``last``) with a backend (``neunn.BACKENDS``) onto a device.

        ``tta`` averages the probabilities over the 8 flips and 90° rotations of each cell (8× the compute);
        ``review_threshold`` and ``critical`` (e.g. ``"GBI,BAC"``) override the model's decision policy;
        ``gate=False`` leaves out the run's cell-type gate, if it has one.
        """
        run = RunDir(Path(run_dir))
        run.require_trained()
        engine = create_engine(run, checkpoint=checkpoint, backend=backend, device=device)
        policy = DecisionPolicy.of_model(engine.meta).overridden(review_threshold=review_threshold,
                                                                 critical=critical, classes=engine.meta["classes"])

        def open_run(path: Path) -> Predictor:  # a screen that is another model runs on the same backend and device
            return cls.from_run(path, backend=backend, device=device, gate=False)

        screens = [screen for name, kind in SCREENS.items() if gate or name != "cell_type_gate"
                   if (screen := kind.load(run, checkpoint=checkpoint, open_run=open_run)) is not None]
        return cls(engine, tta=tta, policy=policy, run=run, checkpoint=checkpoint, screens=screens)

    @property
    def backend(self) -> str:
        return self.engine.backend

    def screen(self, name: str) -> Screen | None:
        """The run's screen of that kind (a name of ``SCREENS``), or None when it has none."""
        return next((s for s in self.screens if s.name == name), None)

    @property
    def ood(self) -> OodScorer | None:
        """The out-of-domain screen's scorer (evaluation reports its figures), or None."""
        screen = self.screen(OutOfDomainScreen.name)
        return None if screen is None else screen.scorer

    @ood.setter
    def ood(self, scorer: OodScorer | None) -> None:
        """Use another out-of-domain scorer (e.g. another threshold), or none; the other screens stay."""
        kept = [s for s in self.screens if s.name != OutOfDomainScreen.name]
        self.screens = kept if scorer is None else [OutOfDomainScreen(scorer), *kept]  # a new list: copies unchanged

    def describe_screens(self) -> dict[str, Any]:
        """What each kind of screen of the run is (None for each it lacks), but the out-of-domain score, which the
        model's record keeps in its own field."""
        return {name: (None if (s := self.screen(name)) is None else s.describe())
                for name, kind in SCREENS.items() if not getattr(kind, "recorded_apart", False)}

    def probabilities(self, pixels: torch.Tensor) -> np.ndarray:
        """Calibrated class probabilities for an N×3×S×S uint8 batch already at the model's input size."""
        return self._forward(pixels)[0]

    def probabilities_and_ood(self, pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities and out-of-domain scores (None without that screen) for an N×3×S×S batch."""
        probs, logits, features = self._forward(pixels)
        ood = self.screen(OutOfDomainScreen.name)
        return probs, None if ood is None else ood.scorer.score(logits, features)

    def _forward(self, pixels: torch.Tensor) -> tuple[np.ndarray, torch.Tensor, torch.Tensor | None]:
        """Calibrated probabilities, and the identity view's logits and features (None unless a screen needs them)."""
        views = dihedral_views(pixels) if self.tta else [pixels]
        if any(s.needs_features for s in self.screens):
            logits, features = self.engine.outputs(views[0])
        else:
            logits, features = self.engine.logits(views[0]), None
        # Screens see the cell as it is (the identity view): their thresholds were fitted on unaugmented cells.
        every = [logits, *(self.engine.logits(v) for v in views[1:])]
        probs = [torch.softmax(x.float() / self.temperature, dim=1) for x in every]
        return torch.stack(probs).mean(0).numpy(), logits, features

    def _result(self, path: str, probs: np.ndarray, calls: dict[str, ScreenCall]) -> Prediction:
        order = np.argsort(-probs)
        label = self.classes[int(order[0])]
        acting = {s.effect: False for s in self.screens}
        for screen in self.screens:
            acting[screen.effect] |= screen.acts(calls[screen.name], label)
        needs_review = self.policy.needs_review(float(probs[order[0]])) or acting.get("review", False)
        return Prediction(path=path, label=label, probability=float(probs[order[0]]),
                          top=[(self.classes[int(i)], float(probs[i])) for i in order[:3]],
                          probs=[float(p) for p in probs], critical=self.policy.is_critical(label),
                          needs_review=needs_review, out_of_domain=acting.get("out_of_domain"), screens=calls)

    def _predict_decoded(self, decoded: list[DecodedCell]) -> list[Prediction]:
        """Predictions for decoded cells in order; one that could not be read gets its error."""
        results = [Prediction(path=cell.name, error=cell.error) if cell.error else None for cell in decoded]
        good = [decoded[i] for i, cell in enumerate(decoded) if cell.error is None]
        if good:
            probs, logits, features = self._forward(torch.stack([cell.pixels for cell in good]))
            calls = {s.name: s.call(ScreenBatch(logits, features, [cell.prepared.get(s.name) for cell in good], probs))
                     for s in self.screens}
            cells = iter(range(len(good)))
            for i, result in enumerate(results):
                if result is None:
                    n = next(cells)
                    results[i] = self._result(decoded[i].name, probs[n], {k: v[n] for k, v in calls.items()})
        return results

    def load_pixels(self, source: str | Path | bytes) -> torch.Tensor:
        """One image file (or its bytes) as model input: 3×S×S uint8, prepared as at training; raises UnreadableImage."""
        return load_pixels(source, self.img_size, jpeg_draft=self.jpeg_draft, crop=self.crop)

    def prepare_input(self, source: str | Path | bytes, image: Image.Image | None, transformed: bool) -> torch.Tensor:
        """This model's input from the image already decoded at full size when that is what training saw (or when it
        was perturbed), else decoded from ``source`` as at training (e.g. a JPEG draft)."""
        if image is not None and (transformed or not self.jpeg_draft):
            return image_to_uint8(image, self.img_size, self.crop)
        return self.load_pixels(source)

    def _decode(self, name: str, source: str | Path | bytes,
                transform: Callable[[Image.Image], Image.Image] | None = None) -> DecodedCell:
        """One input prepared for the model and for each screen, or its error. The file is decoded at full size at
        most once: perturbations and the screens' measurements are defined on that image."""
        try:
            cell, image = DecodedCell(name), None
            if transform is not None or any(s.needs_image for s in self.screens):
                image = load_rgb(source).image
                image = transform(image) if transform is not None else image
            cell.pixels = self.prepare_input(source, image, transform is not None)
            full = FullImage(image)  # its regions are found once, by the first screen that needs them
            cell.prepared = {s.name: s.prepare(full, source, transform is not None) for s in self.screens}
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
