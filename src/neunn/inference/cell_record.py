"""The per-cell record: one typed field list for what NeuNN says of a cell, and the views every output takes of it.

    record = record_of(prediction, classes)           # the model's call, its screens, or the file's error
    record.model_dump()                                # the JSON of the API (``ApiCellResult``), of ``neunn predict
                                                       # --format json`` (``Prediction.as_dict``), and the base of a
                                                       # stored cell (neunn.cases: ``StoredCell``)

As FastAPI's own template keeps one ``models.py``: one field list, several views. The screens' flat fields
(``ood_score``, ``cell_type``, ``out_of_scope``, ``pallor``, ``pale``, ...) are made from the screen registry
(:mod:`neunn.inference.screens`), each screen's value type and verdict, so a new kind of screen appears in every view
(and in the OpenAPI schema, where the record is named ``CellResult``) with no change here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from neunn.inference.screens import SCREENS, screen_fields


class ClassProbability(BaseModel):
    label: str
    probability: float


class ScreenCallRecord(BaseModel):
    """What one screen said of the cell: the value it measured and whether it flags the cell."""

    value: float | str | None = None
    flagged: bool = False
    detail: dict[str, Any] | None = Field(None, description="what the screen shows of its call, e.g. the objects "
                                                            "it found, each with its position and size")


class _CellCall(BaseModel):
    """What the model and its screens said of a cell: the fields a result and a stored cell share."""

    model_config = ConfigDict(extra="forbid")

    probability: float | None = Field(None, description="the calibrated probability of the model's class")
    probabilities: dict[str, float] | None = Field(None, description="every class's calibrated probability")
    needs_review: bool = Field(False, description="confidence under the review threshold, or a screen sent it there")
    out_of_domain: bool | None = Field(None, description="a screen says it is unlike the training cells (None: the "
                                                         "run has no such screen)")
    screens: dict[str, ScreenCallRecord] = Field(default_factory=dict,
                                                 description="each of the run's screens by name, with its call")


def _screen_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for kind in SCREENS.values():
        fields[kind.value_field] = (kind.value_type | None, Field(None, description=f"the {kind.title}'s value"))
        if kind.flag_field:
            fields[kind.flag_field] = (bool | None, Field(None, description=f"the {kind.title}'s verdict"))
    return fields


# The shared fields with each kind of screen's flat fields (value, verdict), made from the registry.
CellCall = create_model("CellCall", __base__=_CellCall, __module__=__name__, **_screen_fields())


class CellResult(CellCall):
    """The per-cell record of a classified (or unreadable) file: the model's call, its screens (as a mapping and as
    flat fields), or the file's error."""

    name: str = Field(description="the file's path or the upload's name")
    label: str | None = Field(None, description="the model's class (None when the file could not be read)")
    top: list[ClassProbability] = Field(default_factory=list, description="the three likeliest classes")
    critical: bool = Field(False, description="the model's class is a critical finding of the policy in force")
    error: str | None = Field(None, description="why the file could not be classified")


def screen_records(prediction: Any) -> dict[str, ScreenCallRecord]:
    return {name: ScreenCallRecord(**call.as_dict()) for name, call in prediction.screens.items()}


def record_of(prediction: Any, classes: list[str] | None) -> CellResult:
    """The record of one ``Prediction`` (its probabilities named by ``classes``, the model's classes; None: left out)."""
    named = classes is not None and prediction.probs is not None
    return CellResult(name=prediction.path, label=prediction.label, probability=prediction.probability,
                      top=[ClassProbability(label=c, probability=p) for c, p in prediction.top],
                      probabilities=dict(zip(classes, prediction.probs)) if named else None,
                      critical=prediction.critical, needs_review=prediction.needs_review,
                      out_of_domain=prediction.out_of_domain, screens=screen_records(prediction),
                      error=prediction.error, **screen_fields(prediction.screens))
