"""What a screen is: something besides the model's own call that looks at every cell and may flag it.

    screen = SCREENS["pallor_screen"].load(run, checkpoint="best", open_run=...)   # None when the run has none
    prepared = [screen.prepare(FullImage(image), source, transformed=False) for each cell]     # per cell, at decode time
    calls = screen.call(ScreenBatch(logits, features, prepared))                     # one ScreenCall per cell
    screen.acts(calls[0], label)      # whether that call changes the cell's decision (its ``effect``)

A screen is fitted on a run's own cells (``neunn screen fit``), kept in the run folder, applied to every prediction,
shown on the page and stored with the case. It never changes the model's class or probabilities: its flag either
sends the cell "outside the model's experience" (``effect = "out_of_domain"``) or to the review bin
(``effect = "review"``). What it says of a cell is a :class:`ScreenCall`: the value it measured and its verdict; the
flat fields of the per-cell record (``value_field``, ``flag_field``) and the CSV column are derived from it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from neunn.atomic import write_text_atomic
from neunn.data.cell_regions import FullImage
from neunn.rundir import RunDir

EFFECTS = ("out_of_domain", "review")


@dataclass(frozen=True)
class ScreenCall:
    """What one screen said of one cell: the value it measured (a score, a pallor, a cell type) and whether it flags
    the cell."""

    value: float | str | None
    flagged: bool
    detail: dict[str, Any] | None = None  # what a screen shows of its call, e.g. the objects it found and where

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "flagged": self.flagged, "detail": self.detail}

    @classmethod
    def of_dict(cls, data: dict[str, Any]) -> ScreenCall:
        return cls(data.get("value"), bool(data.get("flagged")), data.get("detail"))


@dataclass
class ScreenBatch:
    """What a batch of cells gives a screen: the model's logits and features (None unless a screen needs them), the
    calibrated probabilities and, per cell, what the screen's own ``prepare`` made of its image."""

    logits: torch.Tensor
    features: torch.Tensor | None
    prepared: Sequence[Any]
    probs: np.ndarray | None = None  # the cells' calibrated class probabilities (N×C), as the prediction reports them


class Screen(ABC):
    """One kind of screen; its class attributes say how its results appear in every output."""

    name: ClassVar[str]                   # the registry key, and the key of its calls in a prediction and the store
    title: ClassVar[str]                  # how the page and the command line name it
    effect: ClassVar[str]                 # one of EFFECTS
    value_field: ClassVar[str]            # the per-cell record's field for the value (e.g. "pallor")
    value_type: ClassVar[type]            # the value's type in the per-cell record (float, str)
    flag_field: ClassVar[str | None]      # the field for the verdict (e.g. "pale"), or None when it has none of its own
    csv_column: ClassVar[str | None]      # the predict CSV's column for the value, or None
    needs_image: ClassVar[bool] = False   # measured on the full-resolution image, decoded once per cell
    needs_features: bool = False          # needs the model's penultimate features for the batch

    @classmethod
    @abstractmethod
    def load(cls, run: RunDir, *, checkpoint: str, open_run: Callable[..., Any]) -> Screen | None:
        """The run's fitted screen of this kind, or None when it has none. ``open_run(path)`` opens another run's
        Predictor (for a screen that is itself a model) on the same backend and device."""

    @classmethod
    @abstractmethod
    def files(cls, run: RunDir) -> list:
        """The files of the run folder that hold this screen (``neunn screen remove`` deletes them)."""

    @classmethod
    def remove(cls, run: RunDir) -> bool:
        """Delete the run's screen of this kind; whether it had one."""
        found = [path for path in cls.files(run) if path.is_file()]
        for path in found:
            path.unlink()
        return bool(found)

    def prepare(self, cell: FullImage, source, transformed: bool) -> Any:
        """Per-cell work done at decode time on the full-size image (``cell.image``: None unless ``needs_image`` or it
        was decoded anyway; ``cell.regions``: its nucleus and cytoplasm, found once for every screen), e.g. a
        measurement or another model's input. The default: nothing."""
        return None

    @abstractmethod
    def call(self, batch: ScreenBatch) -> list[ScreenCall]:
        """One call per cell of the batch."""

    def acts(self, call: ScreenCall, label: str) -> bool:
        """Whether this call changes the decision on a cell the model called ``label`` (default: when it flags)."""
        return call.flagged

    @classmethod
    def csv_value(cls, call: ScreenCall | None) -> str:
        """The value as the predict CSV writes it."""
        return "" if call is None or call.value is None else str(call.value)

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the screen is and how it was fitted, for the page, ``GET /api/v1/model`` and the case's model record."""


class JsonFileScreen(Screen):
    """A screen kept as one JSON file of the run folder: its dataclass fields, written atomically, never a pickle."""

    run_file: ClassVar[str]  # the RunDir property that names its file (e.g. "pallor_file")

    @classmethod
    def path(cls, run: RunDir) -> Path:
        return getattr(run, cls.run_file)

    @classmethod
    def of_json(cls, data: dict[str, Any]) -> JsonFileScreen:
        """The screen from its file's JSON (a kind whose fields are tuples or records converts them here)."""
        return cls(**data)

    @classmethod
    def read(cls, run: RunDir) -> JsonFileScreen | None:
        """The run's screen of this kind, or None when it has none."""
        path = cls.path(run)
        return cls.of_json(json.loads(path.read_text())) if path.is_file() else None

    @classmethod
    def load(cls, run: RunDir, *, checkpoint: str, open_run) -> JsonFileScreen | None:
        return cls.read(run)

    @classmethod
    def files(cls, run: RunDir) -> list:
        return [cls.path(run)]

    def write(self, run: RunDir) -> None:
        write_text_atomic(self.path(run), json.dumps(self.describe(), indent=1, allow_nan=False))

    def describe(self) -> dict[str, Any]:
        return asdict(self)
