"""Screens: what, besides the model's own call, looks at every cell and may flag it; one registry of their kinds.

    from neunn.inference.screens import SCREENS, screen_fields
    SCREENS["pallor_screen"].load(run, checkpoint="best", open_run=...)    # a run's fitted screen, or None
    screen_fields(prediction.screens)   # {"ood_score": ..., "cell_type": ..., "out_of_scope": ..., "pallor": ..., ...}

Each kind is one file of this package (base.py says what a screen is); registering it here is all it takes for the
Predictor to load and apply it, and for every output (predict's CSV and JSON, evaluate's rows, the API, the case
store, the exports) to carry its results. Its fitting, which needs the run's training cells, lives in
``neunn.training`` and is reached by ``neunn screen fit``. The order here is the order of the CSV columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neunn.inference.screens.base import EFFECTS, Screen, ScreenBatch, ScreenCall
from neunn.inference.screens.cell_type_gate import CellTypeGate
from neunn.inference.screens.conformal import ConformalSets
from neunn.inference.screens.out_of_domain import OutOfDomainScreen
from neunn.inference.screens.pallor import PallorScreen
from neunn.inference.screens.vacuoles import VacuoleFinder

SCREENS: dict[str, type[Screen]] = {kind.name: kind for kind in (OutOfDomainScreen, CellTypeGate, PallorScreen,
                                                                 VacuoleFinder, ConformalSets)}

__all__ = ["EFFECTS", "SCREENS", "Screen", "ScreenBatch", "ScreenCall", "field_names", "screen_fields",
           "csv_columns", "calls_of"]


def field_names() -> list[str]:
    """The flat per-cell fields of every kind of screen, in registry order (value, then verdict)."""
    return [name for kind in SCREENS.values() for name in (kind.value_field, kind.flag_field) if name]


def screen_fields(calls: Mapping[str, ScreenCall]) -> dict[str, Any]:
    """The flat per-cell fields of every kind of screen from a cell's calls (None for a screen it did not have)."""
    fields: dict[str, Any] = {}
    for name, kind in SCREENS.items():
        call = calls.get(name)
        fields[kind.value_field] = None if call is None else call.value
        if kind.flag_field:
            fields[kind.flag_field] = None if call is None else call.flagged
    return fields


def csv_columns() -> list[str]:
    """The predict CSV's screen columns, in registry order."""
    return [kind.csv_column for kind in SCREENS.values() if kind.csv_column]


def calls_of(stored: Mapping[str, Any] | None) -> dict[str, ScreenCall]:
    """A cell's calls from their JSON form ({name: {"value", "flagged"}}), as the case store keeps them."""
    return {name: ScreenCall.of_dict(call) for name, call in (stored or {}).items()}
