"""What the API says about cells and samples: per-cell results, the per-sample summary and the critical-finding alert.

    cell_result(prediction, classes)        # JSON-ready dict for one cell, or its error with an HTTP status
    sample_summary([(label, unidentified, out_of_domain), ...], classes=..., critical_classes=...)

The review page computes the same summary in JavaScript as the reviewer corrects cells (static/app.js, summarize);
both follow the definitions here, which docs/serving.md spells out:

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

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from neunn.inference.cell_record import CellResult
from neunn.inference.predictor import Prediction

NORMAL_CLASSES = ("NEU", "normal")  # the paper's name, and the one of a model of one finding (normal / vacuolated)
UNIDENTIFIED = "Unidentified — review"
OUT_OF_DOMAIN = "Outside the model's experience"
OOD_WARNING_MIN_CELLS = 5
OOD_WARNING_SHARE = 0.2
CLASS_NAMES = {
    "NEU": "Normal neutrophil",
    "HYP": "Hypogranulated neutrophil",
    "CRY": "Cryoglobulin inclusions",
    "DB": "Döhle bodies",
    "HJBLI": "Howell–Jolly body-like inclusions",
    "GBI": "Green–blue inclusions of death",
    "BAC": "Phagocytosed bacteria",
}


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


def normal_class(classes: Iterable[str]) -> str | None:
    """The model's class of normal cells (NEU, or normal), or None when it has none (e.g. a model of other cells)."""
    return next((c for c in NORMAL_CLASSES if c in set(classes)), None)


def critical_message(counts: dict[str, int]) -> str:
    """The alert's sentence, e.g. "Critical finding: 2 cells GBI (Green–blue inclusions of death); confirm…"."""
    parts = [f"{n} cell{'s' if n != 1 else ''} {c}" + (f" ({CLASS_NAMES[c]})" if c in CLASS_NAMES else "")
             for c, n in counts.items()]
    return f"Critical finding: {', '.join(parts)}; confirm and report at once."


def domain_warning(n_out_of_domain: int, n_cells: int) -> dict[str, Any]:
    """The sample-level warning when many of its cells are outside the model's experience (see the module docstring)."""
    share = n_out_of_domain / n_cells if n_cells else 0.0
    warn = n_out_of_domain >= OOD_WARNING_MIN_CELLS and share >= OOD_WARNING_SHARE
    message = (f"{n_out_of_domain} of {n_cells} cells ({share:.0%}) are outside the model's experience: this sample "
               "may come from another laboratory, stain or scanner than the model was trained on; review every cell "
               "and validate the model on such samples before relying on it.") if warn else None
    return {"warning": warn, "n": n_out_of_domain, "share": share, "message": message,
            "min_cells": OOD_WARNING_MIN_CELLS, "min_share": OOD_WARNING_SHARE}


def sample_summary(cells: Iterable[tuple[str | None, bool] | tuple[str | None, bool, bool | None]], *,
                   classes: list[str], critical_classes: Iterable[str]) -> dict[str, Any]:
    """Counts and shares per class, the unidentified and out-of-domain counts, the abnormal share, the critical alert
    and the out-of-domain warning of a sample; each cell is (label, unidentified[, out_of_domain])."""
    counts = dict.fromkeys(classes, 0)
    critical_counts = dict.fromkeys(sorted(set(critical_classes) & set(classes)), 0)
    n_cells = n_unidentified = n_out_of_domain = 0
    for label, unidentified, *rest in cells:
        n_cells += 1
        if label in critical_counts:
            critical_counts[label] += 1
        if rest and rest[0]:
            n_out_of_domain += 1
        elif unidentified:
            n_unidentified += 1
        elif label in counts:
            counts[label] += 1
    identified = n_cells - n_unidentified - n_out_of_domain
    shares = {c: (n / identified if identified else 0.0) for c, n in counts.items()}
    abnormal = None
    normal = normal_class(classes)
    if normal is not None:
        abnormal = (identified - counts[normal]) / identified if identified else 0.0
    found = {c: n for c, n in critical_counts.items() if n}
    return {"n_cells": n_cells, "n_identified": identified, "n_unidentified": n_unidentified,
            "n_out_of_domain": n_out_of_domain, "counts": counts, "shares": shares, "abnormal_share": abnormal,
            "alert": {"critical": bool(found), "counts": found, "message": critical_message(found) if found else None},
            "domain_warning": domain_warning(n_out_of_domain, n_cells)}
