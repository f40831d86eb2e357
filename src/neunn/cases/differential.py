"""The differential of a sample: counts and shares per class, unidentified and out-of-domain cells counted apart, the
abnormal share, the critical-finding alert and the out-of-domain warning.

    sample_summary([(label, unidentified, out_of_domain), ...], classes=..., critical_classes=...)   # any cells
    case_differential(case["cells"], case["models"])       # a stored case's cells (get_case), decisions first

The pure counting lives here, below the web layer, so that the case store's exports and reports (cases/export.py,
cases/report_pdf.py, cases/lis.py) count exactly as the API's per-sample summary (serve/results.py re-exports it) and
the review pages (static/review.js, summarize) do; docs/serving.md spells the definitions out:

* a cell whose calibrated confidence is under the review threshold is "unidentified" (the review bin) and counted apart;
* a cell unlike the model's training cells (its out-of-domain score above the run's threshold) is "outside the model's
  experience" and counted apart too (this bin wins over the review bin: the confidence of such a cell means little);
* when at least OOD_WARNING_MIN_CELLS cells and OOD_WARNING_SHARE of a sample's cells are outside the model's
  experience, the sample gets a warning: about 5 % of cells like the training ones are flagged by design, so a fifth
  of a sample (at least five cells) says the sample itself differs (another laboratory, stain, scanner, or a fault);
* shares are fractions of the identified cells; the abnormal share is the identified cells of any class but the normal
  one (NEU, or normal) (None when the model has no NEU class, e.g. a model of other blood cells);
* a cell raises the critical alert when its class is critical, even while it waits in the review bin: a possible
  green–blue inclusion is reported, not hidden because the model was unsure (or because the cell looks unfamiliar).

In a case, a cell a person decided counts as decided: in its class, as unidentified when the reviewer said so
("unidentified"), or apart as another cell type ("other_cell_type": not a neutrophil, out of the shares), whatever the
model's bins; an undecided cell (an open case) counts by the model's call and bins. A voided cell (a wrong upload)
is not counted at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NORMAL_CLASSES = ("NEU", "normal")  # the paper's name, and the one of a model of one finding (normal / vacuolated)
# A person's calls besides the model's classes (the one home of both; casework and the pages use these names):
UNIDENTIFIED = "unidentified"  # looked at, cannot be classified (an artefact, a smudged or damaged cell)
OTHER_CELL_TYPE = "other_cell_type"  # looked at: not a neutrophil (another cell type), out of the differential
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


def sample_summary(cells: Iterable[tuple], *, classes: list[str], critical_classes: Iterable[str]) -> dict[str, Any]:
    """Counts and shares per class, the unidentified, out-of-domain and other-cell-type counts, the abnormal share, the
    critical alert and the out-of-domain warning of a sample; each cell is (label, unidentified[, out_of_domain[,
    other_cell_type]])."""
    counts = dict.fromkeys(classes, 0)
    critical_counts = dict.fromkeys(sorted(set(critical_classes) & set(classes)), 0)
    n_cells = n_unidentified = n_out_of_domain = n_other = 0
    for label, unidentified, *rest in cells:
        n_cells += 1
        if label in critical_counts:
            critical_counts[label] += 1
        if len(rest) > 1 and rest[1]:
            n_other += 1
        elif rest and rest[0]:
            n_out_of_domain += 1
        elif unidentified:
            n_unidentified += 1
        elif label in counts:
            counts[label] += 1
    identified = n_cells - n_unidentified - n_out_of_domain - n_other
    shares = {c: (n / identified if identified else 0.0) for c, n in counts.items()}
    abnormal = None
    normal = normal_class(classes)
    if normal is not None:
        abnormal = (identified - counts[normal]) / identified if identified else 0.0
    found = {c: n for c, n in critical_counts.items() if n}
    return {"n_cells": n_cells, "n_identified": identified, "n_unidentified": n_unidentified,
            "n_out_of_domain": n_out_of_domain, "n_other_cell_type": n_other, "counts": counts, "shares": shares,
            "abnormal_share": abnormal,
            "alert": {"critical": bool(found), "counts": found, "message": critical_message(found) if found else None},
            "domain_warning": domain_warning(n_out_of_domain, n_cells)}


def standing(cell: Mapping[str, Any]) -> tuple[str | None, bool, bool, bool]:
    """(label, unidentified, out_of_domain, other_cell_type) of a stored cell (a ``get_case`` cell) as the differential
    counts it: the reviewer's decision when there is one (as static/review.js's ``standing`` does), else the model's
    call and bins."""
    final = cell.get("final_label")
    if final == UNIDENTIFIED:
        return None, True, False, False
    if final == OTHER_CELL_TYPE:
        return None, False, False, True
    if final is not None:
        return final, False, False, False
    out_of_domain = bool(cell.get("out_of_domain"))
    return cell["predicted_label"], not out_of_domain and bool(cell.get("needs_review")), out_of_domain, False


def case_classes(models: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The classes (in the first model's order, then any other model's new ones) and the critical classes of the
    models that classified a case's cells."""
    classes: list[str] = []
    critical: list[str] = []
    for model in models:
        classes += [c for c in model["classes"] if c not in classes]
        critical += [c for c in model["critical_classes"] if c not in critical]
    return classes, critical


def case_differential(cells: Iterable[Mapping[str, Any]], models: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The differential of a stored case (``get_case``'s cells and models): :func:`sample_summary` of its cells as they
    stand, with the classes, the critical classes and the normal class it counted by, and ``model_bins``: how many
    cells the model itself put in the review bin and outside its experience (whatever was decided since), with the
    out-of-domain warning on the model's calls (a signed case's cells are all decided, so its own warning is off)."""
    cells = [c for c in cells if not c.get("voided")]
    classes, critical = case_classes(models)
    summary = sample_summary([standing(c) for c in cells], classes=classes, critical_classes=critical)
    n_model_ood = sum(bool(c.get("out_of_domain")) for c in cells)
    model_bins = {"n_unidentified": sum(bool(c.get("needs_review")) and not c.get("out_of_domain") for c in cells),
                  "n_out_of_domain": n_model_ood, "domain_warning": domain_warning(n_model_ood, len(cells))}
    return {**summary, "classes": classes, "critical_classes": critical, "normal_class": normal_class(classes),
            "model_bins": model_bins}
