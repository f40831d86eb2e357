"""A stored cell as the case store gives it (the API's cases routes, the case export, the pages): the per-cell
record's shared fields (:class:`neunn.inference.cell_record.CellCall`: probabilities, flags, screens) with the cell's
place in its case and the reviewer's decision.

    StoredCell.of(cell, models, names).model_dump()
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from neunn.cases.schema import Cell, ModelRecord
from neunn.cases.times import iso
from neunn.inference.cell_record import CellCall, ScreenCallRecord
from neunn.inference.screens import calls_of, screen_fields


def is_critical(cell: Cell, models: dict[int, ModelRecord]) -> bool:
    """Whether the cell's label as it stands (the reviewer's, else the model's) is a critical class of its model (a
    voided cell is nothing)."""
    return (cell.voided_at is None
            and (cell.final_label or cell.predicted_label) in models[cell.model_id].critical_classes)


def is_flagged(cell: Cell, models: dict[int, ModelRecord]) -> bool:
    """Whether the model asked a person to look at this cell (signing needs a decision of its own on it); a voided
    cell needs none."""
    return cell.voided_at is None and bool(cell.needs_review or cell.out_of_domain
                                           or cell.predicted_label in models[cell.model_id].critical_classes)


class StoredCell(CellCall):
    """One cell of a case: the model's call and screens, where it is, and what the reviewer decided."""

    id: int
    position: int
    name: str
    image_sha256: str
    image_url: str
    model_id: int
    predicted_label: str = Field(description="the model's class")
    flagged: bool = Field(description="the model asked for a person's decision: review bin, out of domain, critical")
    critical: bool = Field(description="the label as it stands is a critical class")
    final_label: str | None = Field(description="the reviewer's decision, None until there is one")
    label: str = Field(description="the label as it stands: the reviewer's, else the model's")
    decided_by: str | None
    decided_at: str | None
    version: int = Field(description="bumped by every decision: a decision names the version it changes")
    voided: bool = Field(False, description="a wrong upload, voided with a reason: kept, out of every count")
    void_reason: str | None = None
    voided_by: str | None = None
    voided_at: str | None = None

    @classmethod
    def of(cls, cell: Cell, models: dict[int, ModelRecord], names: dict[int, str]) -> StoredCell:
        calls = calls_of(cell.screens)
        return cls(id=cell.id, position=cell.position, name=cell.name, image_sha256=cell.image_sha256,
                   image_url=f"/api/v1/cases/{cell.case_id}/cells/{cell.id}/image", model_id=cell.model_id,
                   predicted_label=cell.predicted_label, probability=cell.probability,
                   probabilities=cell.probabilities, needs_review=cell.needs_review,
                   out_of_domain=cell.out_of_domain,
                   screens={name: ScreenCallRecord(**call.as_dict()) for name, call in calls.items()},
                   **screen_fields(calls), flagged=is_flagged(cell, models), critical=is_critical(cell, models),
                   final_label=cell.final_label, label=cell.final_label or cell.predicted_label,
                   decided_by=names.get(cell.decided_by), decided_at=iso(cell.decided_at), version=cell.version,
                   voided=cell.voided_at is not None, void_reason=cell.void_reason,
                   voided_by=names.get(cell.voided_by), voided_at=iso(cell.voided_at))


def cell_json(cell: Cell, models: dict[int, ModelRecord], names: dict[int, str]) -> dict[str, Any]:
    return StoredCell.of(cell, models, names).model_dump()
