"""The pallor screen: a run's second look for a finding that pales the cytoplasm (vacuoles), beside its own call.

    screen = PallorScreen.read(RunDir("runs/vacuoles"))   # finding "vacuolated", threshold 0.52, ...; or None
    screen.flags(0.61)                                     # True: pale enough that the finding may be there
    # fitted by `neunn screen fit pallor RUN --finding vacuolated --target-sensitivity 0.9` (neunn.training.pallor_fit)

Each cell's pallor (:mod:`neunn.data.cytoplasm_pallor`, measured without a learnt model) is taken on the
full-resolution image; a cell at or over the threshold that the model did not call the finding goes to review
(``needs_review``), so a screening aid does not let a pale cell through as normal on the model's word alone. The
threshold is chosen on the run's own training and validation cells for a target sensitivity and kept in
``RunDir.pallor_file``. It is a measure for neutrophils: docs/results.md says where it was measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neunn.data.cell_regions import FullImage
from neunn.data.cytoplasm_pallor import regions_pallor
from neunn.inference.screens.base import JsonFileScreen, ScreenBatch, ScreenCall


@dataclass(frozen=True)
class PallorScreen(JsonFileScreen):
    """The finding a screen looks for, the pallor at or over which a cell is flagged, and how that was chosen."""

    finding: str
    threshold: float
    target_sensitivity: float
    fitted_on: dict[str, Any]  # cells, positives, and the sensitivity and specificity the threshold gave there

    name = "pallor_screen"
    title = "pallor screen"
    effect = "review"
    value_field = "pallor"
    value_type = float
    flag_field = "pale"
    csv_column = "pallor"
    needs_image = True
    run_file = "pallor_file"

    def flags(self, pallor: float) -> bool:
        return pallor >= self.threshold

    def prepare(self, cell: FullImage, source, transformed: bool) -> float:
        return regions_pallor(cell.regions)

    def call(self, batch: ScreenBatch) -> list[ScreenCall]:
        return [ScreenCall(float(p), self.flags(p)) for p in batch.prepared]

    def acts(self, call: ScreenCall, label: str) -> bool:
        return call.flagged and label != self.finding  # pale enough for the finding the model did not call

    @classmethod
    def csv_value(cls, call: ScreenCall | None) -> str:
        return "" if call is None else f"{call.value:.4f}"
