"""What the API says about cells and samples: per-cell results, the per-sample summary and the critical-finding alert.

    cell_result(prediction, classes)        # JSON-ready dict for one cell, or its error with an HTTP status
    sample_summary([(label, unidentified, out_of_domain), ...], classes=..., critical_classes=...)

The summary's counting lives in neunn.cases.differential (the case store's exports and reports count the same way)
and is re-exported here. The review page computes the same summary in JavaScript as the reviewer corrects cells
(static/review.js, summarize); both follow these definitions, which docs/serving.md spells out:

* a cell whose calibrated confidence is under the review threshold is "Unidentified — review" and counted apart;
* a cell unlike the model's training cells (its out-of-domain score above the run's threshold) is "Outside the model's
  experience" and counted apart too (this bin wins over the review bin: the confidence of such a cell means little);
* when at least OOD_WARNING_MIN_CELLS cells and OOD_WARNING_SHARE of a sample's cells are outside the model's
  experience, the sample gets a warning: about 5 % of cells like the training ones are flagged by design, so a fifth
  of a sample (at least five cells) says the sample itself differs (another laboratory, stain, scanner, or a fault);
* shares are fractions of the identified cells; the abnormal share is the identified cells of any class but the normal one (NEU, or normal)
  (None when the model has no NEU class, e.g. a model of other blood cells);
* a cell raises the critical alert when its class is critical, even while it waits in the review bin: a possible
  green–blue inclusion is reported, not hidden because the model was unsure (or because the cell looks unfamiliar).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from neunn.cases.differential import (  # noqa: F401  (re-exported: the API's summary counts as the case store does)
    CLASS_NAMES,
    NORMAL_CLASSES,
    OOD_WARNING_MIN_CELLS,
    OOD_WARNING_SHARE,
    critical_message,
    domain_warning,
    normal_class,
    sample_summary,
)
from neunn.inference.cell_record import CellResult
from neunn.inference.predictor import Prediction

UNIDENTIFIED = "Unidentified — review"
OUT_OF_DOMAIN = "Outside the model's experience"


def error_status(reason: str) -> int:
    """The HTTP status for an image the loader refused: 413 too large, 415 not an image, 422 damaged."""
    if "decompression bomb" in reason or "too large" in reason:
        return 413
    if reason.startswith("not an image"):
        return 415
    return 422


class ApiCellResult(CellResult):
    """A cell as the API answers it: the per-cell record, with its HTTP status and the label the page shows."""

    model_config = ConfigDict(extra="allow")  # the API adds where it came from: upload, in_zip (and image)

    status: int = Field(description="200, or the status of why the file was refused (413, 415, 422)")
    display_label: str | None = Field(description="the class, or the bin the cell is in (unidentified, outside the "
                                                  "model's experience)")


class PredictAnswer(BaseModel):
    """The answer of ``POST /api/v1/predict``: one result per cell (with the upload it came from), and the sample."""

    n_files: int
    n_failed: int
    results: list[ApiCellResult]
    summary: dict[str, Any]


def error_result(name: str, reason: str, status: int) -> dict[str, Any]:
    """The result of a file that could not be classified."""
    return ApiCellResult(name=name, status=status, error=reason, display_label=None).model_dump()


def cell_result(prediction: Prediction, classes: list[str]) -> dict[str, Any]:
    """The API's result for one classified (or unreadable) cell."""
    if prediction.error is not None:
        return error_result(prediction.path, prediction.error, error_status(prediction.error))
    display = (OUT_OF_DOMAIN if prediction.out_of_domain else UNIDENTIFIED if prediction.needs_review
               else prediction.label)
    record = prediction.record(classes)
    return ApiCellResult(**record.model_dump(), status=200, display_label=display).model_dump()
