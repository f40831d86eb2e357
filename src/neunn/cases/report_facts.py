"""What a case's report says, gathered once for every form it leaves in (the PDF, FHIR, HL7 v2): the case and its
dates, the differential, the findings with their cells, the models that classified them, who decided the cells and
who signed, and the software's version.

    facts = report_facts(db, case_id)          # a plain dict; the PDF, FHIR bundle and HL7 message are made from it
    facts["findings"]                          # [{"class", "name", "critical", "n_cells", "cells": [...]}, ...]

A finding is a class other than the normal one that the case's cells have: the critical classes first (then the
others, in the model's order), each with the cells counted in it; a critical class also lists its cells that wait in
the review bin or outside the model's experience (the critical alert counts them: see cases/differential.py).
"""

from __future__ import annotations

from typing import Any

from neunn import __version__
from neunn.cases.casework import audit_trail, get_case
from neunn.cases.differential import CLASS_NAMES, case_differential, standing
from neunn.cases.export import DECISION_ACTIONS, file_stem
from neunn.cases.times import iso, utc_now

DISCLAIMERS = (
    "NeuNN is research software, not a diagnostic device: it has no regulatory clearance for clinical use.",
    "Every classification in this report is a suggestion for a qualified person, who checks the cells and "
    "decides; a result is only as good as that review.",
)
HOW = {"confirm": "confirmed one by one", "reclassify": "reclassified", "amend": "amended after signing",
       "bulk_confirm": "confirmed in bulk", "accepted_at_signing": "accepted as classified at signing"}


def class_name(label: str) -> str:
    return CLASS_NAMES.get(label, label)


def _how_decided(trail: list[dict[str, Any]]) -> dict[int, tuple[str | None, str]]:
    """Each cell's last decision in the trail: (who, how), how being a key of HOW."""
    how: dict[int, tuple[str | None, str]] = {}
    for entry in trail:
        if entry["action"] in DECISION_ACTIONS and entry["cell_id"] is not None:
            accepted = entry["action"] == "confirm" and (entry["detail"] or {}).get("accepted_at_signing")
            how[entry["cell_id"]] = (entry["user"], "accepted_at_signing" if accepted else entry["action"])
    return how


def _deciders(cells: list[dict[str, Any]], trail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Who decided the cells as they stand, and how many of each way (one by one, in bulk, at signing, amended)."""
    how = _how_decided(trail)
    rows: dict[str, dict[str, Any]] = {}
    for cell in cells:
        if cell["final_label"] is None:
            continue
        who, way = how.get(cell["id"], (cell["decided_by"], "confirm"))
        row = rows.setdefault(who or "unknown", {"name": who or "unknown", "n_cells": 0, **dict.fromkeys(HOW, 0)})
        row["n_cells"] += 1
        row[way] += 1
    return sorted(rows.values(), key=lambda r: (-r["n_cells"], r["name"]))


def _findings(cells: list[dict[str, Any]], differential: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    critical = differential["critical_classes"]
    ordered = ([c for c in differential["classes"] if c in critical]
               + [c for c in differential["classes"] if c not in critical])
    findings, absent = [], []
    for label in ordered:
        if label == differential["normal_class"]:
            continue
        members = []
        for cell in cells:
            standing_label, unidentified, out_of_domain, other = standing(cell)
            if standing_label == label and (label in critical or not (unidentified or out_of_domain or other)):
                members.append({**cell, "in_review_bin": unidentified, "in_out_of_domain_bin": out_of_domain})
        if not members:
            absent.append(label)
            continue
        findings.append({"class": label, "name": class_name(label), "critical": label in critical,
                         "n_cells": differential["counts"].get(label, 0), "n_in_bins": sum(
                             m["in_review_bin"] or m["in_out_of_domain_bin"] for m in members), "cells": members})
    return findings, absent


def report_facts(db, case_id: int) -> dict[str, Any]:
    """Everything a report of the case says (NotFound for an unknown case); a signed case's ``signed`` is True."""
    case = get_case(db, case_id)
    cells, models, calls = case.pop("cells"), case.pop("models"), case.pop("critical_calls")
    voided, cells = [c for c in cells if c["voided"]], [c for c in cells if not c["voided"]]
    trail = audit_trail(db, case_id)
    differential = case_differential(cells, models)
    findings, absent = _findings(cells, differential)
    return {"case": case, "signed": case["status"] == "signed", "file_stem": file_stem(case["sample_id"]),
            "models": models, "differential": differential, "cells": cells, "findings": findings,
            "absent_findings": absent, "deciders": _deciders(cells, trail), "critical_calls": calls,
            "voided_cells": voided,
            "n_amendments": case["n_amendments"], "neunn_version": __version__, "made_at": iso(utc_now()),
            "disclaimers": list(DISCLAIMERS)}
