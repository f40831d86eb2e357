"""Results to the laboratory information system, never lost: a queue of deliveries in the case store.

    targets = parse_targets(["folder:/srv/lis/inbox", "https://lis.example/fhir"])   # or a bare folder path
    queue_deliveries(db, case_id, targets, reason="sign")      # in the signature's own transaction
    deliver_due(store)                                         # now and then (the server does, every few seconds)
    deliveries_of(db, case_id)                                 # what was owed, tried and delivered

Signing a case (or amending a signed one) queues one delivery per configured target in the same transaction as the
signature, so a signature the API answered has its deliveries in the database, whatever happens to the server next.
A delivery is tried at once and then, until it succeeds, again after 5 s, 10 s, 20 s … (at most an hour apart), by
any server process of the store; it is never given up: a LIS down for a day gets every result when it is back, and
``last_error`` says why it is waiting. What is sent is the case as it stands when delivered (after an amendment, the
amended results), built by cases.lis:

* a folder target gets the FHIR R4 bundle and the HL7 v2.5 ORU^R01 message as two files, each written atomically;
* an ``http(s)://`` target gets the FHIR bundle by ``POST`` (``Content-Type: application/fhir+json``); any 2xx answer
  is a delivery, anything else (or no answer within 30 s) is retried.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from neunn.cases.database import CaseStore
from neunn.cases.errors import Invalid
from neunn.cases.lis import FHIR_MEDIA_TYPE, fhir_bundle, write_lis_files
from neunn.cases.report_facts import report_facts
from neunn.cases.schema import LisDelivery
from neunn.cases.times import as_utc, iso, utc_now

log = logging.getLogger("neunn.lis")
FIRST_RETRY = timedelta(seconds=5)
LONGEST_WAIT = timedelta(hours=1)
HTTP_TIMEOUT_SECONDS = 30
PENDING, DELIVERED = "pending", "delivered"


@dataclass(frozen=True)
class LisTarget:
    """Where a signed case's results go: a folder, or a FHIR endpoint (``url``)."""

    kind: str  # "folder" or "http"
    where: str

    @property
    def name(self) -> str:
        return f"folder:{self.where}" if self.kind == "folder" else self.where


def parse_target(text: str) -> LisTarget:
    """A target from its text: ``http(s)://…`` a FHIR endpoint, ``folder:PATH`` or a bare path a folder."""
    text = text.strip()
    if text.startswith(("http://", "https://")):
        return LisTarget("http", text)
    path = text.removeprefix("folder:")
    if not path:
        raise Invalid("A LIS target is a folder path or an http(s):// FHIR endpoint.")
    return LisTarget("folder", str(Path(path).expanduser().resolve()))


def parse_targets(texts) -> tuple[LisTarget, ...]:
    return tuple(parse_target(t) for t in texts)


def queue_deliveries(db: Session, case_id: int, targets: tuple[LisTarget, ...], *, reason: str) -> None:
    """Owe the case's results to every target (in the caller's transaction: the signature's or the amendment's)."""
    now = utc_now()
    for target in targets:
        db.add(LisDelivery(case_id=case_id, target=target.name, reason=reason, state=PENDING, attempts=0,
                           created_at=now, next_attempt_at=now))


def _send(target: LisTarget, facts: dict[str, Any]) -> None:
    if target.kind == "folder":
        write_lis_files(Path(target.where), facts)
        return
    body = json.dumps(fhir_bundle(facts), ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(target.where, data=body, method="POST",
                                     headers={"Content-Type": f"{FHIR_MEDIA_TYPE}; charset=utf-8",
                                              "Accept": FHIR_MEDIA_TYPE})
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as answer:  # noqa: S310 (the lab's own URL)
        if not 200 <= answer.status < 300:
            raise OSError(f"the endpoint answered HTTP {answer.status}")


def _why(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"the endpoint answered HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return f"the endpoint cannot be reached ({exc.reason})"
    return f"{exc.__class__.__name__}: {exc}"


def _wait_after(attempts: int) -> timedelta:
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_WAIT)


def deliver_due(store: CaseStore, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Try every pending delivery that is due (oldest first); record each outcome. Returns them."""
    now = now or utc_now()
    with store.transaction() as db:
        due = [(d.id, d.case_id, d.target) for d in db.scalars(
            select(LisDelivery).where(LisDelivery.state == PENDING, LisDelivery.next_attempt_at <= now)
            .order_by(LisDelivery.id))]
    outcomes = []
    for delivery_id, case_id, target in due:
        error = None
        try:
            with store.transaction() as db:
                facts = report_facts(db, case_id)
            _send(parse_target(target), facts)
        except Exception as exc:  # a LIS down, a full disk, a refused bundle: retried later, never dropped
            error = _why(exc)[:512]
            log.warning("LIS delivery %s of case %s to %s failed (%s); it will be retried", delivery_id, case_id,
                        target, error)
        with store.transaction() as db:
            delivery = db.get(LisDelivery, delivery_id)
            if delivery is None or delivery.state != PENDING:  # another process delivered it meanwhile
                continue
            delivery.attempts += 1
            if error is None:
                delivery.state, delivery.delivered_at, delivery.last_error = DELIVERED, utc_now(), None
            else:
                delivery.last_error = error
                delivery.next_attempt_at = utc_now() + _wait_after(delivery.attempts)
            outcomes.append(_json(delivery))
    return outcomes


def _json(d: LisDelivery) -> dict[str, Any]:
    return {"id": d.id, "case_id": d.case_id, "target": d.target, "reason": d.reason, "state": d.state,
            "attempts": d.attempts, "last_error": d.last_error, "created_at": iso(d.created_at),
            "next_attempt_at": iso(as_utc(d.next_attempt_at)) if d.state == PENDING else None,
            "delivered_at": iso(d.delivered_at)}


def deliveries_of(db: Session, case_id: int) -> list[dict[str, Any]]:
    """The case's deliveries to the LIS, oldest first."""
    return [_json(d) for d in db.scalars(select(LisDelivery).where(LisDelivery.case_id == case_id)
                                         .order_by(LisDelivery.id))]
