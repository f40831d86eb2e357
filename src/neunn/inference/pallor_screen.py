"""A pallor screen: a run's second look for a finding that pales the cytoplasm (vacuoles), beside its own call.

    screen = read_pallor_screen(RunDir("runs/vacuoles"))   # PallorScreen(finding="vacuolated", threshold=0.52, ...)
    screen.flags(0.61)                                       # True: pale enough that the finding may be there
    # fitted by `neunn pallor fit RUN --finding vacuolated --target-sensitivity 0.9` (neunn.training.pallor_fit)

On neutro-vac-dev the cytoplasm's pallor (`neunn.data.cytoplasm_pallor`, measured without a learnt model) ranked
vacuolated neutrophils above normal ones better than any CNN trained on the same 780 cells, and vacuolated monocytes
at chance (docs/results.md §6): a measure for neutrophils, checked where it is used. A run with a screen computes each
cell's pallor on the full-resolution image; a cell at or over the threshold that the model did not call the finding
goes to review (``needs_review``), so a screening aid does not let a pale cell through as normal on the model's word
alone. The model's class and probabilities are never changed. The threshold is chosen on the run's own training and
validation cells (pallor learns nothing from them) for a target sensitivity, and kept in ``RUN_DIR/pallor.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from neunn.atomic import write_text_atomic
from neunn.rundir import RunDir

PALLOR_FILE = "pallor.json"


@dataclass(frozen=True)
class PallorScreen:
    """The finding a screen looks for, the pallor at or over which a cell is flagged, and how that was chosen."""

    finding: str
    threshold: float
    target_sensitivity: float
    fitted_on: dict[str, Any]  # cells, positives, and the sensitivity and specificity the threshold gave there

    def flags(self, pallor: float) -> bool:
        return pallor >= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_pallor_screen(run: RunDir) -> PallorScreen | None:
    """The run's pallor screen, or None when it has none."""
    path = run.root / PALLOR_FILE
    if not path.is_file():
        return None
    return PallorScreen(**json.loads(path.read_text()))


def write_pallor_screen(run: RunDir, screen: PallorScreen) -> None:
    write_text_atomic(run.root / PALLOR_FILE, json.dumps(screen.as_dict(), indent=1))


def remove_pallor_screen(run: RunDir) -> bool:
    """Remove the run's pallor screen; whether there was one."""
    path = run.root / PALLOR_FILE
    if not path.is_file():
        return False
    path.unlink()
    return True
