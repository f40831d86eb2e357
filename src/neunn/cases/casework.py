"""The review of cases: create, list (the worklist), add classified cells, decide, submit for verification, sign,
amend, void, record the communication of critical findings, and read the trail.

    case = create_case(db, reviewer, "S-2026-0412")
    fresh, repeats = split_repeats(db, case["id"], new_cells)                    # an image already in the case: once
    add_cells(db, reviewer, case["id"], model, fresh)                            # the model's calls, audited
    decide(db, reviewer, case["id"], cell_id, "GBI", version=1)                  # Conflict if someone changed it first
    confirm_in_bulk(db, reviewer, case["id"], {cell_id: 1, ...})                 # unflagged, undecided cells only
    void_cell(db, reviewer, case["id"], cell_id, "another patient's slide", version=2)   # kept, out of the counts
    submit(db, technologist, case["id"])                                         # pre-classified: to verify
    sign(db, pathologist, case["id"])                                            # verified; changes are amendments
    record_critical_call(db, pathologist, case["id"], "Dr Lee, ward 5", "phone")  # to whom, how, when, by whom
    decide(db, admin, case["id"], cell_id, "NEU", version=2, reason="re-read")   # an amendment (needs a reason)

Every change writes its audit entry in the same transaction, so a decision the API answered as saved is in the
database with its trail. A decision names the cell's version it changes: two reviewers changing the same cell cannot
overwrite each other silently (the second gets Conflict with who changed it, to what, and when).

A decision is one of the model's classes, "unidentified" (a person looked at the cell and could not classify it: an
artefact, a smudged or damaged cell) or "other_cell_type" (not a neutrophil: another cell type); neither is ever
exported as training data, and another cell type is counted apart from the differential.

Two levels, as laboratories work (roles in users.py): a technologist pre-classifies and either signs a case without a
critical finding or submits it ("to_verify"); a pathologist verifies and signs. A case with a critical finding (a
cell critical as it stands, or one the model called critical, whatever it was reclassified to) and a submitted case
need a pathologist's signature. Status in the worklist: "to_review" (no decision yet), "in_progress", "to_verify",
"signed", "void"; open cases with a critical finding first, untouched ones first among them. A voided case (a wrong
case) or cell (a wrong upload) keeps its reason and its trail and leaves every count; a signed case is never voided
(it was reported: correct it by amendment).
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
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from neunn.cases.differential import OTHER_CELL_TYPE, UNIDENTIFIED
from neunn.cases.errors import Conflict, Invalid, NotAllowed, NotFound
from neunn.cases.schema import (
    CALL_METHODS,
    CASE_OPEN,
    CASE_SIGNED,
    CASE_SUBMITTED,
    CASE_VOID,
    AuditEntry,
    Case,
    Cell,
    CriticalCall,
    ModelRecord,
    User,
)
from neunn.cases.stored_cell import cell_json, is_critical, is_flagged
from neunn.cases.times import as_utc, iso, utc_now
from neunn.cases.users import Reviewer

# The worklist's statuses, in the order it lists them (after the open cases with a critical finding).
WORKLIST_ORDER = {"to_review": 0, "in_progress": 1, "to_verify": 2, "signed": 3, "void": 4}
PERSON_CALLS = (UNIDENTIFIED, OTHER_CELL_TYPE)  # a person's decisions besides the model's classes
MAX_SAMPLE_ID = 128
MAX_REASON = 512
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
    return {CASE_SIGNED: "signed", CASE_VOID: "void", CASE_SUBMITTED: "to_verify"}.get(
        case.status, "in_progress" if n_decided else "to_review")


def _reason(reason: str | None, what: str) -> str:
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON:
        raise Invalid(f"{what} needs a reason of 1 to {MAX_REASON} characters.")
    return reason


def _refuse_unless_open(case: Case, doing: str) -> None:
    """A signed case changes only by amendment, a voided one not at all."""
    if case.status == CASE_VOID:
        raise Conflict(f"Case {case.sample_id!r} is void; nothing {doing}.")
    if case.status == CASE_SIGNED:
        raise Conflict(f"Case {case.sample_id!r} is signed; signed cells change only by amendment, one at a time.")


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


def _case_row(case: Case, cells: list, models: dict[int, ModelRecord], names: dict[int, str],
              n_critical_calls: int) -> dict[str, Any]:
    live = [c for c in cells if c.voided_at is None]
    n_decided = sum(c.final_label is not None for c in live)
    return {"id": case.id, "sample_id": case.sample_id, "status": _status(case, n_decided), "n_cells": len(live),
            "n_decided": n_decided, "n_critical": sum(is_critical(c, models) for c in live),
            "n_flagged_open": sum(is_flagged(c, models) and c.final_label is None for c in live),
            "n_voided_cells": len(cells) - len(live), "n_critical_calls": n_critical_calls,
            "created_by": names.get(case.created_by), "created_at": iso(case.created_at),
            "updated_at": iso(case.updated_at), "submitted_by": names.get(case.submitted_by),
            "submitted_at": iso(case.submitted_at), "signed_by": names.get(case.signed_by),
            "signed_at": iso(case.signed_at), "n_amendments": case.n_amendments,
            "voided_by": names.get(case.voided_by), "voided_at": iso(case.voided_at), "void_reason": case.void_reason}


def _n_critical_calls(db: Session, case_id: int | None = None) -> dict[int, int]:
    query = select(CriticalCall.case_id, func.count()).group_by(CriticalCall.case_id)
    if case_id is not None:
        query = query.where(CriticalCall.case_id == case_id)
    return dict(db.execute(query).all())


def _models(db: Session) -> dict[int, ModelRecord]:
    return {m.id: m for m in db.scalars(select(ModelRecord))}


def list_cases(db: Session, *, status: str | None = None) -> list[dict[str, Any]]:
    """The worklist: open cases with a critical finding first (untouched ones first, then by how many critical cells),
    then to review, in progress, to verify, signed; newest first within each. Voided cases only when asked for."""
    if status is not None and status not in WORKLIST_ORDER:
        raise Invalid(f"Unknown status {status!r}: choose {', '.join(WORKLIST_ORDER)}.")
    models, names, calls = _models(db), _names(db), _n_critical_calls(db)
    cells: dict[int, list] = {}  # only the columns the counts need: the worklist reads every cell of the store
    for cell in db.execute(select(Cell.case_id, Cell.model_id, Cell.predicted_label, Cell.final_label,
                                  Cell.needs_review, Cell.out_of_domain, Cell.voided_at)):
        cells.setdefault(cell.case_id, []).append(cell)
    rows = [_case_row(case, cells.get(case.id, []), models, names, calls.get(case.id, 0))
            for case in db.scalars(select(Case))]
    rows = [r for r in rows if r["status"] == status or (status is None and r["status"] != "void")]
    rows.sort(key=lambda r: r["updated_at"] or "", reverse=True)
    rows.sort(key=lambda r: (r["status"] in ("signed", "void") or r["n_critical"] == 0,
                             WORKLIST_ORDER[r["status"]], -r["n_critical"]))
    return rows


def _cells(db: Session, case_id: int) -> list[Cell]:
    return list(db.scalars(select(Cell).where(Cell.case_id == case_id).order_by(Cell.position)))


def model_json(model: ModelRecord) -> dict[str, Any]:
    return {"id": model.id, "run": model.run, "weights_sha256": model.weights_sha256, "arch": model.arch,
            "backend": model.backend, "temperature": model.temperature, "review_threshold": model.review_threshold,
            "critical_classes": model.critical_classes, "classes": model.classes,
            "ood_threshold": model.ood_threshold, "screens": model.screens, "first_used_at": iso(model.created_at)}


def case_summary(db: Session, case_id: int) -> dict[str, Any]:
    return _case_row(_case(db, case_id), _cells(db, case_id), _models(db), _names(db),
                     _n_critical_calls(db, case_id).get(case_id, 0))


def critical_calls(db: Session, case_id: int) -> list[dict[str, Any]]:
    """The critical findings' communications recorded for a case, oldest first."""
    names = _names(db)
    return [{"id": c.id, "recipient": c.recipient, "method": c.method, "communicated_at": iso(c.communicated_at),
             "recorded_by": names.get(c.recorded_by), "recorded_at": iso(c.recorded_at), "note": c.note}
            for c in db.scalars(select(CriticalCall).where(CriticalCall.case_id == case_id).order_by(CriticalCall.id))]


def get_case(db: Session, case_id: int) -> dict[str, Any]:
    """A case as it was left: its worklist row, every cell with its decision (voided ones marked), the models that
    classified them and the communications of its critical findings."""
    case, cells, models, names = _case(db, case_id), _cells(db, case_id), _models(db), _names(db)
    used = sorted({c.model_id for c in cells})
    calls = critical_calls(db, case_id)
    return {**_case_row(case, cells, models, names, len(calls)), "cells": [cell_json(c, models, names) for c in cells],
            "models": [model_json(models[m]) for m in used], "critical_calls": calls}


def get_cell(db: Session, case_id: int, cell_id: int) -> Cell:
    cell = db.scalar(select(Cell).where(Cell.id == cell_id, Cell.case_id == case_id))
    if cell is None:
        raise NotFound(f"Case {case_id} has no cell {cell_id}.")
    return cell


def split_repeats(db: Session, case_id: int, new_cells: Iterable[NewCell]) -> tuple[list[NewCell], list[dict]]:
    """The new cells whose image is not yet in the case (nor earlier in ``new_cells``), and for each other one its name
    and the cell that already holds the image: the same image uploaded twice is one cell, counted once."""
    _case(db, case_id, lock=True)  # serialised with add_cells: two uploads of one image cannot both pass
    held = dict(db.execute(select(Cell.image_sha256, Cell.id).where(Cell.case_id == case_id,
                                                                    Cell.voided_at.is_(None))).all())
    fresh, repeats, seen = [], [], {}
    for new in new_cells:
        if new.image_sha256 in held or new.image_sha256 in seen:
            repeats.append({"name": new.name, "cell_id": held.get(new.image_sha256),
                            "same_as": seen.get(new.image_sha256)})
            continue
        seen[new.image_sha256] = new.name
        fresh.append(new)
    return fresh, repeats


def add_cells(db: Session, who: Reviewer, case_id: int, model: ModelInfo,
              new_cells: Iterable[NewCell]) -> list[dict[str, Any]]:
    """Add classified cells to an open case (the model's calls are audited as predictions)."""
    case = _case(db, case_id, lock=True)
    if case.status in (CASE_SIGNED, CASE_VOID):
        raise Conflict(f"Case {case.sample_id!r} is {case.status}; it takes no new cells.")
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
    if label not in model.classes and label not in PERSON_CALLS:
        raise Invalid(f"{label!r} is not a class of the model that classified this cell "
                      f"({', '.join(model.classes)}), nor {' or '.join(map(repr, PERSON_CALLS))}.")
    if case.status == CASE_VOID:
        raise Conflict(f"Case {case.sample_id!r} is void; nothing is decided in it.")
    if cell.voided_at is not None:
        raise Conflict(f"Cell {cell_id} was voided ({cell.void_reason}); it takes no decision.")
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
    _refuse_unless_open(case, "is confirmed in it")
    cells = {c.id: c for c in _cells(db, case_id) if c.voided_at is None}
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


def _ready(db: Session, case: Case, doing: str) -> tuple[list[Cell], dict[int, ModelRecord]]:
    """The live cells of a case that may be signed or submitted: it has cells and every flagged one has a decision."""
    if case.status == CASE_SIGNED:
        raise Conflict(f"Case {case.sample_id!r} was already signed by {_names(db).get(case.signed_by)} at "
                       f"{iso(case.signed_at)}.")
    if case.status == CASE_VOID:
        raise Conflict(f"Case {case.sample_id!r} is void; it cannot be {doing}.")
    cells, models = [c for c in _cells(db, case.id) if c.voided_at is None], _models(db)
    if not cells:
        raise Invalid(f"Case {case.sample_id!r} has no cells to be {doing}.")
    waiting = [c for c in cells if is_flagged(c, models) and c.final_label is None]
    if waiting:
        raise Conflict(f"{len(waiting)} flagged cell{'s' if len(waiting) != 1 else ''} (for review, outside the "
                       f"model's experience, or critical) still need a decision before the case can be {doing}.",
                       detail={"cells": [c.id for c in waiting]})
    return cells, models


def submit(db: Session, who: Reviewer, case_id: int) -> dict[str, Any]:
    """The technologist's pre-classification is done: the case waits for a pathologist's verification and signature.
    Every flagged cell needs its decision first; the cells stay open to the verifier's corrections."""
    case = _case(db, case_id, lock=True)
    if case.status == CASE_SUBMITTED:
        raise Conflict(f"Case {case.sample_id!r} was already submitted by {_names(db).get(case.submitted_by)} at "
                       f"{iso(case.submitted_at)}.")
    cells, models = _ready(db, case, "submitted")
    now = utc_now()
    db.execute(update(Case).where(Case.id == case_id).values(status=CASE_SUBMITTED, submitted_by=who.id,
                                                               submitted_at=now, updated_at=now)
               .execution_options(synchronize_session=False))
    _audit(db, who, "submit", case_id, after=CASE_SUBMITTED,
           detail={"n_cells": len(cells), "n_critical": sum(is_critical(c, models) for c in cells)})
    db.expire_all()
    return case_summary(db, case_id)


def sign(db: Session, who: Reviewer, case_id: int) -> dict[str, Any]:
    """Sign (lock) an open or submitted case; every flagged cell must have a decision, the rest are accepted as
    classified. A case with a critical finding (as the model called it or as it stands) or submitted for verification
    needs a pathologist (or admin): a technologist submits it instead."""
    case = _case(db, case_id, lock=True)
    cells, models = _ready(db, case, "signed")
    n_critical = sum(is_critical(c, models) for c in cells)
    # The model's critical calls count too: a critical call reclassified by a technologist still needs a pathologist.
    n_called = sum(c.predicted_label in models[c.model_id].critical_classes for c in cells)
    verifies = case.status == CASE_SUBMITTED
    if not who.is_pathologist:
        if verifies:
            raise NotAllowed(f"Case {case.sample_id!r} was submitted for verification: a pathologist signs it.")
        if n_critical or n_called:
            n = max(n_critical, n_called)
            raise NotAllowed(f"Case {case.sample_id!r} has {n} critical cell{'s' if n != 1 else ''} (as the model "
                             "called them or as they stand): a pathologist signs it; submit it for verification.")
    now = utc_now()
    signed = db.execute(update(Case).where(Case.id == case_id, Case.status.in_((CASE_OPEN, CASE_SUBMITTED)))
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
           detail={"n_cells": len(cells), "n_accepted_as_classified": len(accepted), "n_critical": n_critical,
                   "verified_submission": verifies})
    db.expire_all()
    return case_summary(db, case_id)


def void_case(db: Session, who: Reviewer, case_id: int, reason: str | None) -> dict[str, Any]:
    """Void a wrongly made case (e.g. the wrong sample): it leaves the worklist, keeps its cells, reason and trail."""
    reason = _reason(reason, "Voiding a case")
    case = _case(db, case_id, lock=True)
    if case.status == CASE_SIGNED:
        raise Conflict(f"Case {case.sample_id!r} is signed and was reported; correct it by amendment instead.")
    if case.status == CASE_VOID:
        raise Conflict(f"Case {case.sample_id!r} was already voided by {_names(db).get(case.voided_by)}.")
    now = utc_now()
    db.execute(update(Case).where(Case.id == case_id).values(status=CASE_VOID, voided_by=who.id, voided_at=now,
                                                               void_reason=reason, updated_at=now)
               .execution_options(synchronize_session=False))
    _audit(db, who, "void", case_id, before=case.status, after=CASE_VOID, detail={"reason": reason})
    db.expire_all()
    return case_summary(db, case_id)


def void_cell(db: Session, who: Reviewer, case_id: int, cell_id: int, reason: str | None, *,
              version: int) -> dict[str, Any]:
    """Void a wrongly uploaded cell of an open case: kept, with its reason and trail, out of every count."""
    reason = _reason(reason, "Voiding a cell")
    case, cell = _case(db, case_id, lock=True), get_cell(db, case_id, cell_id)
    _refuse_unless_open(case, "is voided in it")
    if cell.voided_at is not None:
        raise Conflict(f"Cell {cell_id} was already voided.")
    now = utc_now()
    changed = db.execute(update(Cell).where(Cell.id == cell_id, Cell.version == version)
                         .values(voided_by=who.id, voided_at=now, void_reason=reason, version=Cell.version + 1)
                         .execution_options(synchronize_session=False))
    if changed.rowcount != 1:
        db.refresh(cell)
        raise Conflict("This cell was changed since it was loaded; reload the case and try again.",
                       detail={"cell": cell_json(cell, _models(db), _names(db))})
    db.execute(update(Case).where(Case.id == case_id).values(updated_at=now)
               .execution_options(synchronize_session=False))
    _audit(db, who, "void_cell", case_id, cell_id=cell_id, before=cell.final_label or cell.predicted_label,
           detail={"reason": reason})
    db.refresh(cell)
    return cell_json(cell, _models(db), _names(db))


def record_critical_call(db: Session, who: Reviewer, case_id: int, recipient: str, method: str, *,
                         communicated_at: datetime | None = None, note: str | None = None) -> dict[str, Any]:
    """Record that a case's critical finding was communicated: to whom, how, when (default now; never in the
    future) and by whom (the caller). Refused for a case without a critical finding, and for a void one."""
    recipient, note = (recipient or "").strip(), (note or "").strip() or None
    if not recipient or len(recipient) > 128:
        raise Invalid("Say to whom the finding was communicated (1 to 128 characters).")
    if method not in CALL_METHODS:
        raise Invalid(f"Unknown method {method!r}: choose {', '.join(CALL_METHODS)}.")
    if note is not None and len(note) > MAX_REASON:
        raise Invalid(f"A note is at most {MAX_REASON} characters.")
    now = utc_now()
    at = as_utc(communicated_at) if communicated_at is not None else now
    if at > now + timedelta(minutes=5):
        raise Invalid("A communication cannot be recorded in the future; give the time it happened.")
    case = _case(db, case_id, lock=True)
    if case.status == CASE_VOID:
        raise Conflict(f"Case {case.sample_id!r} is void; it has no finding to communicate.")
    models = _models(db)
    n_critical = sum(is_critical(c, models) for c in _cells(db, case_id))
    if not n_critical:
        raise Conflict(f"Case {case.sample_id!r} has no critical finding to communicate.")
    call = CriticalCall(case_id=case_id, recipient=recipient, method=method, communicated_at=at,
                        recorded_by=who.id, recorded_at=now, note=note)
    db.add(call)
    db.flush()
    _audit(db, who, "communicate", case_id, after=recipient[:128],
           detail={"method": method, "communicated_at": iso(at), "n_critical": n_critical,
                   **({"note": note} if note else {})})
    return next(c for c in critical_calls(db, case_id) if c["id"] == call.id)


def last_audit_id(db: Session, case_id: int) -> int:
    """The id of the case's newest audit entry (0 when none): where a stream of its changes starts."""
    _case(db, case_id)
    return db.scalar(select(func.coalesce(func.max(AuditEntry.id), 0)).where(AuditEntry.case_id == case_id))


def changes_since(db: Session, case_id: int, after: int) -> dict[str, Any] | None:
    """What changed in a case after audit entry ``after``: the new entries, the cells they touched as they stand
    now and the case's row; None when nothing did. Any server process's changes are seen: they are read from the
    trail every process writes."""
    entries = audit_trail(db, case_id, after=after)
    if not entries:
        return None
    touched = {e["cell_id"] for e in entries if e["cell_id"] is not None}
    models, names = _models(db), _names(db)
    cells = [cell_json(c, models, names) for c in _cells(db, case_id) if c.id in touched]
    return {"last": entries[-1]["id"], "entries": entries, "cells": cells, "case": case_summary(db, case_id)}


def audit_trail(db: Session, case_id: int, *, after: int = 0) -> list[dict[str, Any]]:
    """The case's audit entries in order (those after entry ``after`` only, when given)."""
    _case(db, case_id)
    query = select(AuditEntry).where(AuditEntry.case_id == case_id, AuditEntry.id > after).order_by(AuditEntry.id)
    return [{"id": e.id, "at": iso(e.at), "user": e.user_name, "action": e.action, "cell_id": e.cell_id,
             "from": e.from_value, "to": e.to_value, "detail": e.detail} for e in db.scalars(query)]
