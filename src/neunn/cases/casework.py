"""The review of cases: create, list (the worklist), add classified cells, decide, sign, amend, and read the trail.

    case = create_case(db, reviewer, "S-2026-0412")
    add_cells(db, reviewer, case["id"], model, [NewCell(...), ...])              # the model's calls, audited
    decide(db, reviewer, case["id"], cell_id, "GBI", version=1)                  # Conflict if someone changed it first
    confirm_in_bulk(db, reviewer, case["id"], {cell_id: 1, ...})                 # unflagged, undecided cells only
    sign(db, reviewer, case["id"])                                                # locks it; later changes are amendments
    decide(db, admin, case["id"], cell_id, "NEU", version=2, reason="re-read")   # an amendment (needs a reason)

Every change writes its audit entry in the same transaction, so a decision the API answered as saved is in the
database with its trail. A decision names the cell's version it changes: two reviewers changing the same cell cannot
overwrite each other silently (the second gets Conflict with who changed it, to what, and when).

A decision is one of the model's classes, or "unidentified": a person looked at the cell and could not classify it (an
artefact, a smudged or damaged cell, not a cell of the model's kind); such cells are never exported as training data.

Status in the worklist: "to_review" (no decision yet), "in_progress", "signed"; cases with a critical finding first.
A cell is critical when its current label (the reviewer's, else the model's) is a critical class of the model that
classified it. Signing needs a decision on every cell the model flagged (for review, out of domain, or critical); the
other cells are accepted as classified, by the signer, each with its audit entry.

A flagged cell is never decided in bulk: ``confirm_in_bulk`` takes only undecided cells that the model did not flag
and whose call is not critical, refuses the whole request naming any other, and records each cell it confirms as a
"bulk_confirm" in the trail, so that a flagged cell of a signed case always has a decision of its own (``decide``) and
an export can tell the cells a person decided one by one from those confirmed together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from neunn.cases.errors import Conflict, Invalid, NotAllowed, NotFound
from neunn.cases.schema import CASE_OPEN, CASE_SIGNED, AuditEntry, Case, Cell, ModelRecord, User
from neunn.cases.stored_cell import cell_json, is_critical, is_flagged
from neunn.cases.times import iso, utc_now
from neunn.cases.users import Reviewer

WORKLIST_ORDER = {"in_progress": 0, "to_review": 1, "signed": 2}
UNIDENTIFIED = "unidentified"  # a reviewer's call besides the model's classes: looked at, cannot be classified
MAX_SAMPLE_ID = 128
MAX_BULK_CELLS = 10_000  # more than any sample holds: a request beyond it is refused before any database work


@dataclass(frozen=True)
class ModelInfo:
    """The model and decision policy in force when cells were classified."""

    run: str
    weights_sha256: str | None
    arch: str | None
    backend: str
    temperature: float
    review_threshold: float
    critical_classes: tuple[str, ...]
    classes: tuple[str, ...]
    ood_threshold: float | None = None
    screens: dict[str, Any] | None = None  # {"cell_type_gate": {...}, "pallor_screen": {...}} when the run has them

    def fingerprint(self) -> str:
        fields = asdict(self)
        if fields["screens"] is None:  # as before the field existed: a model's record is found again after upgrade
            del fields["screens"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class NewCell:
    """A classified cell to add to a case; its image is already in the image store."""

    name: str
    image_sha256: str
    image_ext: str
    label: str
    probability: float
    probabilities: dict[str, float]
    needs_review: bool
    out_of_domain: bool | None = None
    screens: dict[str, dict[str, Any]] | None = None  # what each screen said: {name: {"value", "flagged"}}


def _audit(db: Session, who: Reviewer | None, action: str, case_id: int | None, *, cell_id: int | None = None,
           before: str | None = None, after: str | None = None, detail: dict | None = None) -> None:
    db.add(AuditEntry(at=utc_now(), user_name=who.name if who else None, action=action, case_id=case_id,
                      cell_id=cell_id, from_value=before, to_value=after, detail=detail))


def _model_record(db: Session, model: ModelInfo) -> ModelRecord:
    fingerprint = model.fingerprint()
    found = db.scalar(select(ModelRecord).where(ModelRecord.fingerprint == fingerprint))
    if found is not None:
        return found
    record = ModelRecord(fingerprint=fingerprint, created_at=utc_now(),
                         **{**asdict(model), "critical_classes": list(model.critical_classes),
                            "classes": list(model.classes)})
    try:
        with db.begin_nested():  # another server process may store the same model at the same instant
            db.add(record)
    except IntegrityError:
        return db.scalar(select(ModelRecord).where(ModelRecord.fingerprint == fingerprint))
    return record


def _case(db: Session, case_id: int, *, lock: bool = False) -> Case:
    query = select(Case).where(Case.id == case_id)
    case = db.scalar(query.with_for_update() if lock else query)
    if case is None:
        raise NotFound(f"There is no case {case_id}.")
    return case


def _names(db: Session) -> dict[int, str]:
    return dict(db.execute(select(User.id, User.name)).all())


def _status(case: Case, n_decided: int) -> str:
    return "signed" if case.status == CASE_SIGNED else "in_progress" if n_decided else "to_review"


def create_case(db: Session, who: Reviewer, sample_id: str) -> dict[str, Any]:
    sample_id = (sample_id or "").strip()
    if not sample_id or len(sample_id) > MAX_SAMPLE_ID or not sample_id.isprintable():
        raise Invalid(f"A sample ID is 1 to {MAX_SAMPLE_ID} printable characters.")
    if db.scalar(select(Case.id).where(Case.sample_id == sample_id)) is not None:
        raise Conflict(f"A case for sample {sample_id!r} already exists; open it from the worklist.")
    now = utc_now()
    case = Case(sample_id=sample_id, status=CASE_OPEN, created_by=who.id, created_at=now, updated_at=now,
                n_amendments=0)
    try:
        with db.begin_nested():
            db.add(case)
    except IntegrityError:
        raise Conflict(f"A case for sample {sample_id!r} already exists; open it from the worklist.") from None
    _audit(db, who, "create", case.id, after=sample_id)
    return case_summary(db, case.id)


def _case_row(case: Case, cells: list[Cell], models: dict[int, ModelRecord], names: dict[int, str]) -> dict[str, Any]:
    n_decided = sum(c.final_label is not None for c in cells)
    return {"id": case.id, "sample_id": case.sample_id, "status": _status(case, n_decided), "n_cells": len(cells),
            "n_decided": n_decided, "n_critical": sum(is_critical(c, models) for c in cells),
            "n_flagged_open": sum(is_flagged(c, models) and c.final_label is None for c in cells),
            "created_by": names.get(case.created_by), "created_at": iso(case.created_at),
            "updated_at": iso(case.updated_at), "signed_by": names.get(case.signed_by),
            "signed_at": iso(case.signed_at), "n_amendments": case.n_amendments}


def _models(db: Session) -> dict[int, ModelRecord]:
    return {m.id: m for m in db.scalars(select(ModelRecord))}


def list_cases(db: Session, *, status: str | None = None) -> list[dict[str, Any]]:
    """The worklist: cases with a critical finding first, then in progress, to review, signed; newest first."""
    if status is not None and status not in WORKLIST_ORDER:
        raise Invalid(f"Unknown status {status!r}: choose {', '.join(WORKLIST_ORDER)}.")
    models, names = _models(db), _names(db)
    cells: dict[int, list] = {}  # only the columns the counts need: the worklist reads every cell of the store
    for cell in db.execute(select(Cell.case_id, Cell.model_id, Cell.predicted_label, Cell.final_label,
                                  Cell.needs_review, Cell.out_of_domain)):
        cells.setdefault(cell.case_id, []).append(cell)
    rows = [_case_row(case, cells.get(case.id, []), models, names) for case in db.scalars(select(Case))]
    rows = [r for r in rows if status is None or r["status"] == status]
    rows.sort(key=lambda r: r["updated_at"] or "", reverse=True)
    rows.sort(key=lambda r: (r["status"] == "signed" or r["n_critical"] == 0, WORKLIST_ORDER[r["status"]]))
    return rows


def _cells(db: Session, case_id: int) -> list[Cell]:
    return list(db.scalars(select(Cell).where(Cell.case_id == case_id).order_by(Cell.position)))


def model_json(model: ModelRecord) -> dict[str, Any]:
    return {"id": model.id, "run": model.run, "weights_sha256": model.weights_sha256, "arch": model.arch,
            "backend": model.backend, "temperature": model.temperature, "review_threshold": model.review_threshold,
            "critical_classes": model.critical_classes, "classes": model.classes,
            "ood_threshold": model.ood_threshold, "screens": model.screens, "first_used_at": iso(model.created_at)}


def case_summary(db: Session, case_id: int) -> dict[str, Any]:
    return _case_row(_case(db, case_id), _cells(db, case_id), _models(db), _names(db))


def get_case(db: Session, case_id: int) -> dict[str, Any]:
    """A case as it was left: its worklist row, every cell with its decision, and the models that classified them."""
    case, cells, models, names = _case(db, case_id), _cells(db, case_id), _models(db), _names(db)
    used = sorted({c.model_id for c in cells})
    return {**_case_row(case, cells, models, names), "cells": [cell_json(c, models, names) for c in cells],
            "models": [model_json(models[m]) for m in used]}


def get_cell(db: Session, case_id: int, cell_id: int) -> Cell:
    cell = db.scalar(select(Cell).where(Cell.id == cell_id, Cell.case_id == case_id))
    if cell is None:
        raise NotFound(f"Case {case_id} has no cell {cell_id}.")
    return cell


def add_cells(db: Session, who: Reviewer, case_id: int, model: ModelInfo,
              new_cells: Iterable[NewCell]) -> list[dict[str, Any]]:
    """Add classified cells to an open case (the model's calls are audited as predictions)."""
    case = _case(db, case_id, lock=True)
    if case.status == CASE_SIGNED:
        raise Conflict(f"Case {case.sample_id!r} is signed; a signed case takes no new cells.")
    record = _model_record(db, model)
    position = db.scalar(select(func.coalesce(func.max(Cell.position), -1)).where(Cell.case_id == case_id)) + 1
    added = []
    for offset, new in enumerate(new_cells):
        cell = Cell(case_id=case_id, position=position + offset, name=new.name[:512], image_sha256=new.image_sha256,
                    image_ext=new.image_ext, model_id=record.id, predicted_label=new.label,
                    probability=new.probability, probabilities=new.probabilities, needs_review=new.needs_review,
                    out_of_domain=new.out_of_domain, screens=new.screens or None, version=1)
        db.add(cell)
        db.flush()
        _audit(db, who, "predict", case_id, cell_id=cell.id, after=new.label,
               detail={"probability": round(new.probability, 4), "needs_review": new.needs_review,
                       "out_of_domain": new.out_of_domain, "model_id": record.id, "image_sha256": new.image_sha256})
        added.append(cell)
    case.updated_at = utc_now()
    models, names = _models(db), _names(db)
    return [cell_json(c, models, names) for c in added]


def decide(db: Session, who: Reviewer, case_id: int, cell_id: int, label: str, *, version: int,
           reason: str | None = None) -> dict[str, Any]:
    """Set a cell's final label: a confirmation or reclassification while the case is open, an amendment after signing.

    ``version`` is the cell's version the reviewer saw; a different current version is a Conflict."""
    case, cell = _case(db, case_id, lock=True), get_cell(db, case_id, cell_id)  # serialised with sign()
    model = db.get(ModelRecord, cell.model_id)
    if label not in model.classes and label != UNIDENTIFIED:
        raise Invalid(f"{label!r} is not a class of the model that classified this cell "
                      f"({', '.join(model.classes)}), nor {UNIDENTIFIED!r}.")
    amending = case.status == CASE_SIGNED
    if amending:
        if not (who.is_admin or who.id == case.signed_by):
            raise NotAllowed(f"Case {case.sample_id!r} is signed; only its signer or an admin may amend it.")
        if not (reason or "").strip():
            raise Invalid(f"Case {case.sample_id!r} is signed; an amendment needs a reason.")
    before = cell.final_label or cell.predicted_label
    now = utc_now()
    changed = db.execute(update(Cell).where(Cell.id == cell_id, Cell.version == version)
                         .values(final_label=label, decided_by=who.id, decided_at=now, version=Cell.version + 1)
                         .execution_options(synchronize_session=False))
    if changed.rowcount != 1:
        db.refresh(cell)
        by = _names(db).get(cell.decided_by, "someone")
        raise Conflict(f"This cell was changed by {by} at {iso(cell.decided_at)} (now {cell.final_label}); "
                       "reload the case and decide again.",
                       detail={"cell": cell_json(cell, _models(db), _names(db))})
    action = "amend" if amending else "confirm" if label == cell.predicted_label else "reclassify"
    values: dict[str, Any] = {"updated_at": now}
    if amending:
        values["n_amendments"] = Case.n_amendments + 1
    db.execute(update(Case).where(Case.id == case_id).values(**values).execution_options(synchronize_session=False))
    _audit(db, who, action, case_id, cell_id=cell_id, before=before, after=label,
           detail={"reason": reason.strip()} if reason and reason.strip() else None)
    db.refresh(cell)
    return cell_json(cell, _models(db), _names(db))


def confirm_in_bulk(db: Session, who: Reviewer, case_id: int, versions: dict[int, int]) -> list[dict[str, Any]]:
    """Confirm the model's call on several unflagged, undecided cells of an open case at once.

    ``versions`` maps each cell's id to the version the reviewer saw. All or nothing: a flagged or critical cell, a
    cell already decided or changed since (Conflict), or a cell of another case refuses the whole request, so each
    flagged cell keeps needing a decision of its own. Each confirmed cell gets a "bulk_confirm" audit entry."""
    if not versions:
        raise Invalid("A bulk confirmation names at least one cell.")
    if len(versions) > MAX_BULK_CELLS:
        raise Invalid(f"A bulk confirmation names at most {MAX_BULK_CELLS} cells.")
    case = _case(db, case_id, lock=True)  # serialised with decide() and sign()
    if case.status == CASE_SIGNED:
        raise Conflict(f"Case {case.sample_id!r} is signed; signed cells change only by amendment, one at a time.")
    cells = {c.id: c for c in _cells(db, case_id)}
    missing = sorted(set(versions) - set(cells))
    if missing:
        raise NotFound(f"Case {case_id} has no cell {missing[0]}.")
    models = _models(db)
    refused = [i for i in versions if is_flagged(cells[i], models) or is_critical(cells[i], models)]
    if refused:
        raise Invalid(f"{len(refused)} of these cells {'is' if len(refused) == 1 else 'are'} flagged (for review, "
                      "outside the model's experience, or critical) and need a decision of their own, one at a time; "
                      "nothing was confirmed.", detail={"cells": sorted(refused)})
    stale = [i for i, version in versions.items() if cells[i].final_label is not None or cells[i].version != version]
    if stale:
        raise Conflict(f"{len(stale)} of these cells {'was' if len(stale) == 1 else 'were'} decided or changed since "
                       "the case was loaded; nothing was confirmed: reload the case and try again.",
                       detail={"cells": sorted(stale)})
    now = utc_now()
    for cell_id, version in versions.items():
        cell = cells[cell_id]
        changed = db.execute(update(Cell).where(Cell.id == cell_id, Cell.version == version,
                                                Cell.final_label.is_(None))
                             .values(final_label=cell.predicted_label, decided_by=who.id, decided_at=now,
                                     version=Cell.version + 1).execution_options(synchronize_session=False))
        if changed.rowcount != 1:  # the case row's lock makes this unreachable but for a writer that bypasses it
            raise Conflict("A cell was decided during the bulk confirmation; reload the case and try again.")
        _audit(db, who, "bulk_confirm", case_id, cell_id=cell_id, before=cell.predicted_label,
               after=cell.predicted_label, detail={"n_cells": len(versions)})
    db.execute(update(Case).where(Case.id == case_id).values(updated_at=now)
               .execution_options(synchronize_session=False))
    db.expire_all()
    models, names = _models(db), _names(db)
    return [cell_json(c, models, names) for c in _cells(db, case_id) if c.id in versions]


def sign(db: Session, who: Reviewer, case_id: int) -> dict[str, Any]:
    """Sign (lock) an open case; every flagged cell must have a decision, the rest are accepted as classified."""
    case = _case(db, case_id, lock=True)
    if case.status == CASE_SIGNED:
        raise Conflict(f"Case {case.sample_id!r} was already signed by {_names(db).get(case.signed_by)} at "
                       f"{iso(case.signed_at)}.")
    cells, models = _cells(db, case_id), _models(db)
    if not cells:
        raise Invalid(f"Case {case.sample_id!r} has no cells to sign.")
    waiting = [c for c in cells if is_flagged(c, models) and c.final_label is None]
    if waiting:
        raise Conflict(f"{len(waiting)} flagged cell{'s' if len(waiting) != 1 else ''} (for review, outside the "
                       "model's experience, or critical) still need a decision before the case can be signed.",
                       detail={"cells": [c.id for c in waiting]})
    now = utc_now()
    signed = db.execute(update(Case).where(Case.id == case_id, Case.status == CASE_OPEN)
                        .values(status=CASE_SIGNED, signed_by=who.id, signed_at=now, updated_at=now)
                        .execution_options(synchronize_session=False))
    if signed.rowcount != 1:
        raise Conflict(f"Case {case.sample_id!r} was signed by someone else a moment ago; reload it.")
    accepted = [c for c in cells if c.final_label is None]
    for cell in accepted:
        changed = db.execute(update(Cell).where(Cell.id == cell.id, Cell.final_label.is_(None))
                             .values(final_label=cell.predicted_label, decided_by=who.id, decided_at=now,
                                     version=Cell.version + 1).execution_options(synchronize_session=False))
        if changed.rowcount != 1:
            raise Conflict("A cell was decided while the case was being signed; reload the case and sign again.")
        _audit(db, who, "confirm", case_id, cell_id=cell.id, before=cell.predicted_label, after=cell.predicted_label,
               detail={"accepted_at_signing": True})
    _audit(db, who, "sign", case_id, after=CASE_SIGNED,
           detail={"n_cells": len(cells), "n_accepted_as_classified": len(accepted)})
    db.expire_all()
    return case_summary(db, case_id)


def audit_trail(db: Session, case_id: int) -> list[dict[str, Any]]:
    _case(db, case_id)
    return [{"id": e.id, "at": iso(e.at), "user": e.user_name, "action": e.action, "cell_id": e.cell_id,
             "from": e.from_value, "to": e.to_value, "detail": e.detail}
            for e in db.scalars(select(AuditEntry).where(AuditEntry.case_id == case_id).order_by(AuditEntry.id))]
