"""The cases API: the worklist, a case's cells and decisions, its signature, audit trail and export.

    app.include_router(case_api.router)     # with a store; the routes read it through deps.py

Routes (every one needs a login; see accounts.py):

    GET  /api/v1/cases[?status=to_review|in_progress|to_verify|signed|void]   the worklist, critical findings first
    POST /api/v1/cases                  {"sample_id": "S-1"}          a new case (201)
    GET  /api/v1/cases/{id}                                          the case as it was left: cells, decisions, models
    POST /api/v1/cases/{id}/cells       multipart files (and zips)    classify and keep them; refused files and images
                                                                      already in the case fail alone
    GET  /api/v1/cases/{id}/cells/{cell}/image                       the stored image
    PUT  /api/v1/cases/{id}/cells/{cell}/decision  {"label", "version", "reason"?}   409 when someone changed it first
    POST /api/v1/cases/{id}/cells/{cell}/void  {"reason", "version"}   a wrong upload: kept, out of every count
    POST /api/v1/cases/{id}/bulk-confirmation  {"cells": [{"id", "version"}]}   unflagged undecided cells only (422)
    POST /api/v1/cases/{id}/submission                               pre-classified: to a pathologist's verification
    POST /api/v1/cases/{id}/signature                                sign (lock) the case; critical: a pathologist
    POST /api/v1/cases/{id}/void        {"reason"}                    a wrongly made case leaves the worklist
    POST /api/v1/cases/{id}/critical-calls  {"recipient", "method", "communicated_at"?, "note"?}   a critical finding
                                                                      communicated: to whom, how, when, by whom
    GET  /api/v1/cases/{id}/audit[?format=csv]                       the audit trail
    GET  /api/v1/cases/{id}/export[?format=csv]                      the case, differential, cells, trail (CSV: cells)
    GET  /api/v1/cases/{id}/report.pdf                               the printable report (preliminary until signed)
    GET  /api/v1/cases/{id}/fhir                                     a signed case as a FHIR R4 Bundle (409 unsigned)
    GET  /api/v1/cases/{id}/hl7                                      a signed case as an HL7 v2.5 ORU^R01 (409 unsigned)

Downloads are named by the sample ID (cases.export.file_stem). With LIS targets (folders, FHIR endpoints), signing a
case (and amending a signed one) queues its results for each in the same transaction; they are delivered at once and
retried until delivered (cases.lis_delivery; GET /api/v1/cases/{id}/deliveries says where they stand).

Blocking database work runs in FastAPI's worker threads, one transaction per request (deps.Transaction) where a route
does one piece of work; classification goes through the one compute slot that ``POST /api/v1/predict`` uses.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from neunn.cases.casework import (
    MAX_REASON,
    MAX_SAMPLE_ID,
    WORKLIST_ORDER,
    ModelInfo,
    NewCell,
    add_cells,
    audit_trail,
    case_summary,
    confirm_in_bulk,
    create_case,
    decide,
    get_case,
    get_cell,
    list_cases,
    record_critical_call,
    sign,
    split_repeats,
    submit,
    void_case,
    void_cell,
)
from neunn.cases.errors import Conflict, Invalid
from neunn.cases.export import (
    AUDIT_COLUMNS,
    CELL_COLUMNS,
    case_export,
    file_stem,
    rows_csv,
)
from neunn.cases.images import image_extension
from neunn.cases.lis import FHIR_MEDIA_TYPE, fhir_bundle, hl7_oru
from neunn.cases.lis_delivery import deliver_due, deliveries_of, queue_deliveries
from neunn.cases.report_facts import report_facts
from neunn.cases.report_pdf import case_report_pdf
from neunn.cases.schema import CALL_METHODS
from neunn.cases.stored_cell import StoredCell
from neunn.cases.users import Reviewer
from neunn.inference.export import weights_sha256
from neunn.inference.predictor import Predictor
from neunn.serve.api_errors import ErrorBody, error_responses
from neunn.serve.deps import CurrentReviewer, Serving, ServingDep, StoreDep, Transaction
from neunn.serve.results import ApiCellResult, cell_result, error_result
from neunn.serve.text_fields import SAMPLE_ID, SOME_TEXT
from neunn.serve.uploads import read_uploads, upload_body

log = logging.getLogger("neunn.serve")
_CHANGE = error_responses(400, 403, 409)  # a body that cannot be read, CSRF or role, the case's state refuses it
_NOT_SIGNED = {409: {"model": ErrorBody, "description": "the case is not signed: a LIS takes signed results only"}}
_JSON_OR_CSV = {"application/json": {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}}}
_MIME = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "bmp": "image/bmp", "tif": "image/tiff",
         "webp": "image/webp"}
class NewCase(BaseModel):
    sample_id: str = Field(min_length=1, max_length=MAX_SAMPLE_ID, pattern=SAMPLE_ID,
                           description="the sample's ID, as on its label: printable, no control characters")


class CaseWithCells(BaseModel):
    """A case as ``GET /api/v1/cases/{id}`` gives it: its worklist row's fields, every stored cell, the models."""

    model_config = ConfigDict(extra="allow")  # the worklist row's fields

    cells: list[StoredCell]
    models: list[dict[str, Any]]


class CellsAnswer(BaseModel):
    """What ``POST /api/v1/cases/{id}/cells`` answers: the cells kept, and each file that failed alone (refused,
    unreadable, or already in the case) with its status; when every file failed, the answer has the first one's."""

    n_files: int
    n_failed: int
    cells: list[StoredCell]
    errors: list[ApiCellResult]


# Ids and versions: at most the largest integer every JSON reader holds exactly (2**53 - 1, JavaScript's
# Number.MAX_SAFE_INTEGER), well within the database's 64-bit integers; a larger one is refused (422) before it
# reaches the database.
MAX_ID = 2**53 - 1
CaseId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="the case's number")]
CellId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="the cell's number")]


class Decision(BaseModel):
    label: str
    version: int = Field(ge=1, le=MAX_ID)
    reason: str | None = None


class CellVersion(BaseModel):
    id: int = Field(ge=1, le=MAX_ID)
    version: int = Field(ge=1, le=MAX_ID)


class Void(BaseModel):
    reason: str = Field(min_length=1, max_length=MAX_REASON, pattern=SOME_TEXT,
                        description="why: kept in the case and its audit trail")


class CellVoid(Void):
    version: int = Field(ge=1, le=MAX_ID)


class CriticalCallIn(BaseModel):
    """A critical finding communicated: to whom, how and when (default: now); the caller is who recorded it."""

    recipient: str = Field(min_length=1, max_length=128, pattern=SOME_TEXT,
                           description="e.g. 'Dr Lee, ward 5 (on call)'")
    method: Literal[CALL_METHODS]  # type: ignore[valid-type]
    communicated_at: AwareDatetime | None = None
    note: str | None = Field(None, max_length=MAX_REASON)


class BulkConfirmation(BaseModel):
    """Cells whose model call the reviewer confirms together: each must be undecided, unflagged and not critical."""

    cells: list[CellVersion] = Field(min_length=1, json_schema_extra={"uniqueItems": True})


def model_info(predictor: Predictor, run_name: str) -> ModelInfo:
    """The model and policy in force, as a case records them."""
    ood = predictor.ood.as_dict() if predictor.ood is not None else {}
    weights = weights_sha256(predictor.run, predictor.checkpoint) if predictor.run is not None else None
    return ModelInfo(run=run_name, weights_sha256=weights,
                     arch=predictor.meta.get("arch"), backend=predictor.backend,
                     temperature=float(predictor.temperature),
                     review_threshold=float(predictor.policy.review_threshold),
                     critical_classes=tuple(sorted(predictor.policy.critical_classes)),
                     classes=tuple(predictor.classes), ood_threshold=ood.get("threshold"),
                     screens={k: v for k, v in predictor.describe_screens().items() if v is not None} or None)


router = APIRouter(prefix="/api/v1/cases", tags=["cases"], responses=error_responses(401, 404, 422))


def _deliver_now(serving: Serving) -> None:
    """Try the deliveries a signature or an amendment just queued (committed with it: one that fails here is retried
    by the server's delivery loop, never lost; the routes /fhir and /hl7 give the results meanwhile)."""
    if serving.lis_targets and serving.store is not None:
        deliver_due(serving.store)


@router.get("", summary="The worklist: cases with critical findings first, then in progress, to review, signed")
def worklist(_: CurrentReviewer, db: Transaction,
             status: Literal[tuple(WORKLIST_ORDER)] | None = None) -> dict[str, Any]:  # type: ignore[valid-type]
    return {"cases": list_cases(db, status=status)}


@router.post("", status_code=201, responses=_CHANGE, summary="Open a case for a sample")
def new_case(body: NewCase, who: CurrentReviewer, db: Transaction) -> dict[str, Any]:
    return create_case(db, who, body.sample_id)


@router.get("/{case_id}", summary="A case as it was left: its cells, the model's calls and the decisions",
            responses={200: {"model": CaseWithCells, "description": "the case's row, cells and models"}})
def read_case(case_id: CaseId, _: CurrentReviewer, db: Transaction) -> dict[str, Any]:
    return get_case(db, case_id)


def _keep(serving: Serving, who: Reviewer, case_id: int, uploads) -> dict[str, Any]:
    """Classify the uploads and keep the readable ones in the case (one transaction); the others fail alone."""
    station, store = serving.station, serving.store
    classified, errors = [], []
    for upload, index, in_zip, prediction in station.classify(uploads):
        if prediction is None or prediction.error is not None:  # refused, or unreadable: it fails alone
            result = (error_result(upload.name, upload.error, upload.status) if prediction is None
                      else cell_result(prediction, station.predictor.classes))
            errors.append({**result, "upload": index, "in_zip": in_zip})
            continue
        classified.append(NewCell(
            name=upload.name, image_sha256=store.images.put(upload.data), image_ext=image_extension(upload.data),
            label=prediction.label, probability=float(prediction.probability),
            probabilities={c: float(p) for c, p in zip(station.predictor.classes, prediction.probs or [])},
            needs_review=bool(prediction.needs_review), out_of_domain=prediction.out_of_domain,
            screens={name: call.as_dict() for name, call in prediction.screens.items()}))
    with store.transaction() as db:
        fresh, repeats = split_repeats(db, case_id, classified)
        cells = add_cells(db, who, case_id, serving.case_model, fresh) if fresh else []
    for repeat in repeats:  # the same image again: one cell, counted once
        where = f"cell {repeat['cell_id']}" if repeat["cell_id"] else f"{repeat['same_as']!r} of this upload"
        errors.append({**error_result(repeat["name"], f"This image is already in the case ({where}); it is kept "
                                                      "and counted once.", 409), "duplicate_of": repeat["cell_id"]})
    return {"n_files": len(classified) + len(errors) - len(repeats), "n_failed": len(errors),
            "cells": cells, "errors": errors}


@router.post("/{case_id}/cells", openapi_extra=upload_body("files", "cell images and/or zips of this sample's cells",
                                                           many=True),
             responses={200: {"model": CellsAnswer, "description": "the cells kept, and each file that failed alone"},
                        **_CHANGE, **error_responses(408),
                        **error_responses(409, 413, 415, 422, or_answer=CellsAnswer)},
             summary="Classify cell images (and zips) and keep them in the case; a refused file fails alone")
async def upload_cells(case_id: CaseId, request: Request, who: CurrentReviewer, serving: ServingDep,
                       store: StoreDep) -> JSONResponse:
    # No request-long transaction here: the upload is read and classified with no database lock held.
    def refuse_unless_open() -> None:  # a missing or signed case is refused before the upload is read
        with store.transaction() as db:
            row = case_summary(db, case_id)
        if row["status"] == "signed":
            raise Conflict(f"Case {row['sample_id']!r} is signed; a signed case takes no new cells.")

    await anyio.to_thread.run_sync(refuse_unless_open)
    async with serving.reading:
        uploads = await read_uploads(request, serving.station.limits)
        body = await anyio.to_thread.run_sync(_keep, serving, who, case_id, uploads, limiter=serving.compute)
    return JSONResponse(body, status_code=200 if body["cells"] or not body["errors"] else
                        body["errors"][0]["status"])


@router.get("/{case_id}/cells/{cell_id}/image", response_class=Response,
            responses={200: {"content": {"image/*": {}}}}, summary="A cell's stored image")
def cell_image(case_id: CaseId, cell_id: CellId, _: CurrentReviewer, store: StoreDep, db: Transaction) -> Response:
    cell = get_cell(db, case_id, cell_id)
    return Response(store.images.read(cell.image_sha256), media_type=_MIME.get(cell.image_ext,
                    "application/octet-stream"), headers={"Cache-Control": "private, max-age=3600"})


@router.put("/{case_id}/cells/{cell_id}/decision", responses=_CHANGE,
            summary="Confirm or reclassify a cell (an amendment, with a reason, once the case is signed)")
def put_decision(case_id: CaseId, cell_id: CellId, body: Decision, who: CurrentReviewer, serving: ServingDep,
                 store: StoreDep) -> dict[str, Any]:
    with store.transaction() as db:  # an amendment and its deliveries to the LIS commit together
        cell = decide(db, who, case_id, cell_id, body.label, version=body.version, reason=body.reason)
        signed = case_summary(db, case_id)["status"] == "signed"
        if signed:  # an amendment: the LIS gets the corrected results
            queue_deliveries(db, case_id, serving.lis_targets, reason="amend")
    if signed:
        _deliver_now(serving)
    return cell


@router.post("/{case_id}/bulk-confirmation", responses=_CHANGE,
             summary="Confirm the model's call on several unflagged, undecided cells at once (never a flagged one)")
def post_bulk_confirmation(case_id: CaseId, body: BulkConfirmation, who: CurrentReviewer,
                           db: Transaction) -> dict[str, Any]:
    versions = {cell.id: cell.version for cell in body.cells}
    if len(versions) != len(body.cells):
        if len({(cell.id, cell.version) for cell in body.cells}) == len(body.cells):  # as a stale version would be
            raise Conflict("A bulk confirmation names a cell with two versions; at most one is its current version.")
        raise Invalid("A bulk confirmation names each cell once.")
    return {"cells": confirm_in_bulk(db, who, case_id, versions)}


@router.post("/{case_id}/cells/{cell_id}/void", responses=_CHANGE,
             summary="Void a wrongly uploaded cell (with a reason): kept in the case and its trail, out of every count")
def post_cell_void(case_id: CaseId, cell_id: CellId, body: CellVoid, who: CurrentReviewer,
                   db: Transaction) -> dict[str, Any]:
    return void_cell(db, who, case_id, cell_id, body.reason, version=body.version)


@router.post("/{case_id}/submission", responses=_CHANGE,
             summary="Submit the pre-classified case for a pathologist's verification (every flagged cell decided)")
def post_submission(case_id: CaseId, who: CurrentReviewer, db: Transaction) -> dict[str, Any]:
    return submit(db, who, case_id)


@router.post("/{case_id}/void", responses=_CHANGE,
             summary="Void a wrongly made case (with a reason): it leaves the worklist, kept")
def post_case_void(case_id: CaseId, body: Void, who: CurrentReviewer, db: Transaction) -> dict[str, Any]:
    return void_case(db, who, case_id, body.reason)


@router.post("/{case_id}/critical-calls", status_code=201, responses=_CHANGE,
             summary="Record that the case's critical finding was communicated: to whom, how, when; by the caller")
def post_critical_call(case_id: CaseId, body: CriticalCallIn, who: CurrentReviewer, db: Transaction) -> dict[str, Any]:
    return record_critical_call(db, who, case_id, body.recipient, body.method,
                                communicated_at=body.communicated_at, note=body.note)


@router.post("/{case_id}/signature", responses=_CHANGE,
             summary="Sign the case: it is locked; later changes are amendments; a case with a critical finding "
                     "needs a pathologist")
def post_signature(case_id: CaseId, who: CurrentReviewer, serving: ServingDep, store: StoreDep) -> dict[str, Any]:
    with store.transaction() as db:  # the signature and its deliveries to the LIS commit together
        row = sign(db, who, case_id)
        queue_deliveries(db, case_id, serving.lis_targets, reason="sign")
    _deliver_now(serving)
    return row


@router.get("/{case_id}/deliveries",
            summary="The case's results owed to the LIS: each target, its state (pending or delivered), the attempts "
                    "and the last error")
def read_deliveries(case_id: CaseId, _: CurrentReviewer, db: Transaction) -> dict[str, Any]:
    case_summary(db, case_id)  # 404 for an unknown case
    return {"deliveries": deliveries_of(db, case_id)}


@router.get("/{case_id}/audit", summary="The case's audit trail: who did what, when, from what to what",
            responses={200: {"content": _JSON_OR_CSV, "description": "the entries (?format=csv: a CSV download)"}})
def read_audit(case_id: CaseId, _: CurrentReviewer, db: Transaction,
               format: Literal["json", "csv"] = "json") -> Any:
    entries = audit_trail(db, case_id)
    sample_id = case_summary(db, case_id)["sample_id"]
    if format == "csv":
        return _csv(rows_csv(entries, AUDIT_COLUMNS), f"{file_stem(sample_id)}-audit.csv")
    return {"audit": entries}


@router.get("/{case_id}/export", summary="The case with its cells, models and audit trail (CSV: the cells)",
            responses={200: {"content": _JSON_OR_CSV, "description": "a download (?format=csv: the cells as CSV)"}})
def export(case_id: CaseId, _: CurrentReviewer, db: Transaction, format: Literal["json", "csv"] = "json") -> Any:
    body = case_export(db, case_id)
    stem = file_stem(body["case"]["sample_id"])
    if format == "csv":
        return _csv(rows_csv(body["cells"], CELL_COLUMNS), f"{stem}-cells.csv")
    return JSONResponse(body, headers=_attachment(f"{stem}.json"))


@router.get("/{case_id}/report.pdf", response_class=Response,
            summary="The case's printable report (PDF): differential, findings with thumbnails, model, reviewers, "
                    "signature, disclaimers; marked preliminary on every page until signed",
            responses={200: {"content": {"application/pdf": {}}, "description": "the report, named by sample ID"}})
def report_pdf(case_id: CaseId, _: CurrentReviewer, store: StoreDep, db: Transaction) -> Response:
    facts = report_facts(db, case_id)
    pdf = case_report_pdf(facts, store.images.read)
    return Response(pdf, media_type="application/pdf",
                    headers={**_attachment(f"{facts['file_stem']}-report.pdf"), "Cache-Control": "no-store"})


@router.get("/{case_id}/fhir", response_class=Response,
            summary="A signed case for the LIS: an HL7 FHIR R4 Bundle (DiagnosticReport, Specimen, Observations)",
            responses={200: {"content": {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}},
                             "description": "a Bundle of type collection"}, **_NOT_SIGNED})
def read_fhir(case_id: CaseId, _: CurrentReviewer, db: Transaction) -> Response:
    facts = report_facts(db, case_id)
    body = json.dumps(fhir_bundle(facts), ensure_ascii=False)
    return Response(body.encode("utf-8"), media_type=f"{FHIR_MEDIA_TYPE}; charset=utf-8",
                    headers={**_attachment(f"{facts['file_stem']}.fhir.json"), "Cache-Control": "no-store"})


@router.get("/{case_id}/hl7", response_class=Response,
            summary="A signed case for the LIS: an HL7 v2.5 ORU^R01 message (segments separated by CR)",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "MSH, PID, OBR, NTE, OBX per result, SPM; UTF-8"}, **_NOT_SIGNED})
def read_hl7(case_id: CaseId, _: CurrentReviewer, db: Transaction) -> Response:
    facts = report_facts(db, case_id)
    return Response(hl7_oru(facts).encode("utf-8"), media_type="text/plain; charset=utf-8",
                    headers={**_attachment(f"{facts['file_stem']}.hl7"), "Cache-Control": "no-store"})


def _attachment(filename: str) -> dict[str, str]:
    """Content-Disposition for a download; ``filename`` is already safe (file_stem keeps letters, digits, - _ .)."""
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def _csv(text: str, filename: str) -> Response:
    return Response(text, media_type="text/csv; charset=utf-8", headers=_attachment(filename))
