"""Reviewers see each other: a case's changes and who is on it, live, as Server-Sent Events.

    GET /api/v1/cases/{id}/events          text/event-stream (the page's EventSource; the session cookie suffices)

    event: presence   data: {"viewers": ["ana", "ben"]}                       whenever someone opens or leaves it
    id: 412
    event: change     data: {"last": 412, "entries": [...], "cells": [...], "case": {...}}   new audit entries

Changes are read from the audit trail, which every server process writes, so a decision made through another
process (or the command line) arrives too; ``id`` is the last audit entry sent, and a browser that reconnects sends
it back as ``Last-Event-ID`` so nothing between is missed. Who is on a case is known per server process (a lab
running several processes behind one proxy sees the viewers of its own process). A stream ends after
``ServeLimits.max_event_stream_seconds`` (proxies drop idle long requests anyway); EventSource reconnects by itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from neunn.cases.casework import changes_since, last_audit_id
from neunn.serve.api_errors import error_responses
from neunn.serve.deps import CurrentReviewer, ServingDep
from neunn.serve.case_api import CaseId

POLL_SECONDS = 1.0  # how soon another reviewer's decision shows
HEARTBEAT_SECONDS = 15.0  # a comment line, so that proxies and the browser keep the connection open

router = APIRouter(prefix="/api/v1/cases", tags=["cases"], responses=error_responses(401, 404, 422))


def _event(kind: str, data: dict[str, Any], *, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get("/{case_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": "presence and change events until the stream's time is up"}},
            summary="Live updates of a case (Server-Sent Events): others' decisions and who is on the case")
async def case_events(case_id: CaseId, request: Request, who: CurrentReviewer, serving: ServingDep,
                      last_event_id: str | None = Header(None)) -> StreamingResponse:
    store, presence = serving.store, serving.presence

    def start() -> int:
        with store.transaction() as db:
            newest = last_audit_id(db, case_id)  # NotFound (404) before the stream starts
        given = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
        return min(given, newest) if given is not None else newest

    def changes(after: int) -> dict[str, Any] | None:
        with store.transaction() as db:
            return changes_since(db, case_id, after)

    after = await anyio.to_thread.run_sync(start)

    async def stream() -> AsyncIterator[str]:
        nonlocal after
        presence.arrive(case_id, who.name)
        told, beat = -1, time.monotonic()
        ends = time.monotonic() + serving.station.limits.max_event_stream_seconds
        try:
            yield "retry: 2000\n\n"
            while time.monotonic() < ends and not await request.is_disconnected():
                if presence.version != told:
                    told = presence.version
                    yield _event("presence", {"viewers": presence.names(case_id)})
                found = await anyio.to_thread.run_sync(changes, after)
                if found is not None:
                    after = found["last"]
                    yield _event("change", found, event_id=after)
                if time.monotonic() - beat > HEARTBEAT_SECONDS:
                    beat = time.monotonic()
                    yield ": still here\n\n"
                await anyio.sleep(POLL_SECONDS)
        finally:
            presence.leave(case_id, who.name)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
