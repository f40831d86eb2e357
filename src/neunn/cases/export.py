"""What leaves the case store: one case as JSON or CSV (cells with decisions, and its audit trail), and the signed
cells of every case as a folder-per-class dataset that ``neunn train --add`` takes.

    body = case_export(db, case_id)                     # {"case", "models", "differential", "cells", "audit"}
    name = file_stem(body["case"]["sample_id"])         # "S-2026-0412": download names, by sample ID
    text = rows_csv(body["cells"], CELL_COLUMNS)        # or rows_csv(body["audit"], AUDIT_COLUMNS)
    report = export_reviewed(store, Path("reviewed"))   # reviewed/<final label>/<sha256>.<ext> + manifest.csv

The dataset's manifest.csv records each cell's provenance: case and sample, the reviewer who decided it and how
(confirmed, reclassified, amended, confirmed in bulk, or accepted as classified at signing), the model's call and the final call, and the
model (run and weights SHA-256) that made it. An image in several cases is written
once; its manifest rows say so. A cell whose signed cases disagree on its class is left out and reported.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from neunn.atomic import write_atomic, write_text_atomic
from neunn.cases.casework import PERSON_CALLS, audit_trail, get_case
from neunn.cases.database import CaseStore
from neunn.cases.differential import case_differential
from neunn.cases.errors import Invalid
from neunn.cases.schema import CASE_SIGNED, AuditEntry, Case, Cell, ModelRecord, User
from neunn.cases.times import iso
from neunn.data.scan import MANIFEST_NAME
from neunn.inference.screens import field_names

CELL_COLUMNS = ("id", "position", "name", "image_sha256", "predicted_label", "probability", "needs_review",
                "out_of_domain", *field_names(), "critical", "final_label", "decided_by", "decided_at", "model_id",
                "version")
AUDIT_COLUMNS = ("id", "at", "user", "action", "cell_id", "from", "to", "detail")
DECISION_ACTIONS = ("confirm", "reclassify", "amend", "bulk_confirm")
BULK = "confirmed_in_bulk"  # the manifest's decision for a cell confirmed with others by one action
MANIFEST_COLUMNS = ("file", "final_label", "model_label", "decision", "case_id", "sample_id", "cell_id", "reviewer",
                    "decided_at", "signed_by", "signed_at", "model_run", "model_weights_sha256", "image_sha256")


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_stem(sample_id: str) -> str:
    """A file name's stem for a sample's downloads: its sample ID with only letters, digits, - _ . kept (any other run
    of characters becomes one "_", dots and "_" at either end go, "sample" if nothing is left); when that changed the
    ID, 8 hex digits of its SHA-256 follow, so two sample IDs never share a name ("S/1" and "S_1" are two samples)
    and a name says when it is not the ID as is."""
    safe = _UNSAFE.sub("_", sample_id).strip("._")[:80].strip("._") or "sample"
    if safe == sample_id:
        return safe
    return f"{safe}-{hashlib.sha256(sample_id.encode()).hexdigest()[:8]}"


def case_export(db, case_id: int) -> dict[str, Any]:
    """One case: its worklist row, the models, the differential (``cases.differential``), every cell, the trail."""
    case = get_case(db, case_id)
    cells, models = case.pop("cells"), case.pop("models")
    return {"case": case, "models": models, "differential": case_differential(cells, models), "cells": cells,
            "audit": audit_trail(db, case_id)}


def rows_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    return out.getvalue()


def _decisions(db) -> dict[int, str]:
    """How each cell got its final label: its last decision in the trail (confirm, reclassify, amend),
    "confirmed_in_bulk" when it was confirmed with other cells by one action, or "accepted_at_signing" when the signer
    accepted it as classified without deciding it one by one."""
    how: dict[int, str] = {}
    for entry in db.scalars(select(AuditEntry).where(AuditEntry.action.in_(DECISION_ACTIONS),
                                                     AuditEntry.cell_id.is_not(None)).order_by(AuditEntry.id)):
        accepted = entry.action == "confirm" and (entry.detail or {}).get("accepted_at_signing")
        how[entry.cell_id] = ("accepted_at_signing" if accepted else BULK if entry.action == "bulk_confirm"
                              else entry.action)
    return how


def export_reviewed(store: CaseStore, out: Path, *, skip_accepted: bool = False, include_bulk: bool = False,
                    signed_since: datetime | None = None) -> dict[str, Any]:
    """Write the cells of signed cases to ``out``/<final label>/ with manifest.csv; returns counts.

    ``skip_accepted`` leaves out the cells accepted as classified at signing (no person confirmed or changed them one
    by one: they would teach the model its own unflagged calls); the cells confirmed in bulk are left out unless
    ``include_bulk`` (a person saw them together, not one by one); ``signed_since`` keeps the cases signed at or after
    that time (e.g. a held-out set of later reviews). Exporting again into a previous export brings it up to date:
    files no longer in the manifest (a cell amended to another class since) are removed."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise Invalid(f"{out} is a folder with other content; export into a new folder or a previous export.")
    query = select(Cell, Case).join(Case, Case.id == Cell.case_id).where(Case.status == CASE_SIGNED)
    if signed_since is not None:
        query = query.where(Case.signed_at >= signed_since)
    with store.transaction() as db:
        names = dict(db.execute(select(User.id, User.name)).all())
        models = {m.id: m for m in db.scalars(select(ModelRecord))}
        found = db.execute(query.order_by(Case.id, Cell.position)).all()
        how = _decisions(db)
    found = [(cell, case) for cell, case in found if cell.voided_at is None]  # a wrong upload: nothing to learn
    left_out = {call: sum(cell.final_label == call for cell, _ in found) for call in PERSON_CALLS}
    found = [(cell, case) for cell, case in found if cell.final_label not in PERSON_CALLS]  # no class to learn from
    if skip_accepted:
        found = [(cell, case) for cell, case in found if how.get(cell.id) != "accepted_at_signing"]
    bulk = sum(how.get(cell.id) == BULK for cell, _ in found)
    if not include_bulk:
        found = [(cell, case) for cell, case in found if how.get(cell.id) != BULK]
    if not found:
        raise Invalid("No signed case has cells to export" + (
            " with these options" if skip_accepted or signed_since or bulk else "") + (
            f" ({bulk} confirmed in bulk are left out without --include-bulk)" if bulk and not include_bulk else "")
            + ": sign cases at the review station, then export them.")
    labels: dict[str, set[str]] = {}
    for cell, _ in found:
        labels.setdefault(cell.image_sha256, set()).add(cell.final_label)
    conflicting = {sha for sha, seen in labels.items() if len(seen) > 1}
    rows, counts = [], {}
    for cell, case in found:
        if cell.image_sha256 in conflicting:
            continue
        relative = Path(cell.final_label) / f"{cell.image_sha256}.{cell.image_ext}"
        target = out / relative
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, lambda tmp, sha=cell.image_sha256: tmp.write_bytes(store.images.read(sha)))
            counts[cell.final_label] = counts.get(cell.final_label, 0) + 1
        model = models[cell.model_id]
        rows.append({"file": relative.as_posix(), "final_label": cell.final_label, "model_label": cell.predicted_label,
                     "decision": how.get(cell.id), "case_id": case.id, "sample_id": case.sample_id,
                     "cell_id": cell.id, "reviewer": names.get(cell.decided_by), "decided_at": iso(cell.decided_at),
                     "signed_by": names.get(case.signed_by), "signed_at": iso(case.signed_at),
                     "model_run": model.run, "model_weights_sha256": model.weights_sha256,
                     "image_sha256": cell.image_sha256})
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / MANIFEST_NAME, rows_csv(rows, MANIFEST_COLUMNS))
    listed = {r["file"] for r in rows}
    stale = [p for p in out.glob("*/*") if p.is_file() and p.relative_to(out).as_posix() not in listed]
    for path in stale:  # an earlier export's cell since amended to another class, or now left out
        path.unlink()
    corrected = sum(r["final_label"] != r["model_label"] for r in rows)
    return {"out": str(out), "n_cells": len(rows), "n_images": len({r["image_sha256"] for r in rows}),
            "n_new_files": sum(counts.values()), "n_removed_files": len(stale), "n_corrected": corrected,
            "n_accepted_at_signing": sum(r["decision"] == "accepted_at_signing" for r in rows),
            "n_confirmed_in_bulk": sum(r["decision"] == BULK for r in rows),
            "n_bulk_left_out": 0 if include_bulk else bulk,
            **{f"n_{call}_left_out": n for call, n in left_out.items()},
            "n_cases": len({r["case_id"] for r in rows}), "n_conflicting_images": len(conflicting),
            "per_class": {label: sum(r["final_label"] == label for r in rows)
                          for label in sorted({r["final_label"] for r in rows})}}
