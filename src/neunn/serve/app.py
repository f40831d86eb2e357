"""The review station's web application: the pages and the HTTP API around one Predictor.

    app = create_app(predictor, store=open_store(store_dir))       # cases kept, reviewers log in (neunn serve)
    app = create_app(predictor, token="s3cret")                     # --ephemeral: nothing kept, one shared token

Routes: ``GET /`` the page (static files: no build step, nothing fetched from the network) — with a store the worklist
and case review (``/login`` to log in), without one the one-sample review page; ``GET /healthz``,
``GET /api/v1/model``, ``POST /api/v1/predict`` (multipart: images and zips of one sample's cells → JSON per cell,
summary and critical alert), ``POST /api/v1/heatmap`` (one image → transparent PNG Grad-CAM overlay), with a store
the accounts routes (accounts.py) and the cases routes (case_api.py), and the OpenAPI schema at ``/openapi.json``
(Swagger UI at ``/docs``). The pages, their static files, ``/healthz`` and the schema reveal nothing and stay open.

The routers are module-level (model_api.py, accounts.py, case_api.py, case_events.py) and take what they need
through the providers in deps.py, which read the one ``Serving`` this function puts on ``app.state``. Errors are
JSON ``{"error": "..."}``; an unexpected one is logged and answered with a 500, and the server goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from neunn import __version__
from neunn.cases.database import CaseStore
from neunn.cases.lis_delivery import deliver_due, parse_targets
from neunn.errors import NeunnError
from neunn.inference.predictor import Predictor
from neunn.serve import accounts, case_api, case_events, model_api
from neunn.serve.api_errors import error_responses, install_error_handlers
from neunn.serve.api_schema import served_schema
from neunn.serve.deps import Serving, current_reviewer, shared_token
from neunn.serve.limits import ServeLimits
from neunn.serve.station import Station

_PAGE_HEADERS = {  # the page loads nothing from elsewhere, and nothing may frame it
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}


def create_app(predictor: Predictor, *, store: CaseStore | None = None, token: str | None = None,
               limits: ServeLimits | None = None, model_info: dict[str, Any] | None = None,
               lis_targets: Sequence[str | Path] = ()) -> FastAPI:
    """The FastAPI app of the review station for one predictor.

    With a ``store``, cases are kept and every /api/ route but the login needs a named reviewer's login (see
    accounts.py); without one (``--ephemeral``), nothing is kept and ``token``, when set, guards every /api/ route.
    With ``lis_targets`` (a store needed: folders, or http(s):// FHIR endpoints), each case signed or amended owes its
    results to each; the server delivers them and retries until delivered (cases.lis_delivery), every few seconds."""
    if store is not None and token is not None:
        raise NeunnError("A shared token is only for --ephemeral serving; with a case store, reviewers log in.")
    if store is None and lis_targets:
        raise NeunnError("LIS targets receive signed cases, and --ephemeral keeps none: drop one of them.")
    station = Station(predictor, limits or ServeLimits())
    model_card = {**(model_info or {}), "cases": store is not None}
    serving = Serving(
        station=station, store=store, token=token,
        reading=anyio.Semaphore(station.limits.max_concurrent_requests), compute=anyio.CapacityLimiter(1),
        model_card=model_card, lis_targets=parse_targets(str(t) for t in lis_targets),
        case_model=case_api.model_info(predictor, str(model_card.get("run", ""))) if store is not None else None)

    app = FastAPI(title="NeuNN review station", version=__version__, lifespan=_lifespan(serving),
                  description="Neutrophil classification with calibrated confidence, a review bin, critical-finding "
                              "alerts and Grad-CAM heatmaps" + (
                                  "; cases, named reviewers and an audit trail. Every /api/ route but the login needs "
                                  "a session or a bearer token (POST /api/v1/token)." if store is not None else
                                  ". All /api/ routes need the token when one is set."))
    app.state.serving = serving
    install_error_handlers(app)
    app.openapi = served_schema(app, classes=predictor.classes, cases=store is not None)
    guard = Depends(current_reviewer if store is not None else shared_token)
    refusals = (401, 403) if store is not None else (401,) if token is not None else ()  # the guard's (deps.py)
    app.include_router(model_api.health_router)
    app.include_router(model_api.router, dependencies=[guard], responses=error_responses(*refusals))
    if store is not None:
        app.include_router(accounts.router)
        app.include_router(case_api.router)
        app.include_router(case_events.router)
    _add_pages(app, cases=store is not None)
    return app


log = logging.getLogger("neunn.serve")
DELIVERY_INTERVAL_SECONDS = 5  # how often the server tries the LIS deliveries that are due


def _lifespan(serving: Serving):
    """While the server runs: with LIS targets, a loop that delivers what is due (cases.lis_delivery)."""
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        async with anyio.create_task_group() as tasks:
            if serving.lis_targets and serving.store is not None:
                tasks.start_soon(_deliver_forever, serving.store)
            yield
            tasks.cancel_scope.cancel()
    return lifespan


async def _deliver_forever(store: CaseStore) -> None:
    while True:
        try:
            await anyio.to_thread.run_sync(deliver_due, store, abandon_on_cancel=True)
        except Exception:  # a broken database connection, say: logged, tried again at the next turn
            log.exception("the LIS delivery loop failed; it goes on")
        await anyio.sleep(DELIVERY_INTERVAL_SECONDS)


def _add_pages(app: FastAPI, *, cases: bool) -> None:
    """The pages and their static files (no build step, nothing fetched from the network), with headers that keep
    them from loading anything from elsewhere or being framed."""
    static = resources.files("neunn.serve") / "static"
    pages = {"/": "cases.html" if cases else "index.html", **({"/login": "login.html"} if cases else {})}

    @app.middleware("http")
    async def _page_headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path in pages or request.url.path.startswith("/static/"):
            response.headers.update(_PAGE_HEADERS)
        return response

    for path, name in pages.items():
        app.add_api_route(path, _page(str(static / name)), methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(static)), name="static")


def _page(file: str):
    async def page() -> FileResponse:
        return FileResponse(file, media_type="text/html")
    return page
