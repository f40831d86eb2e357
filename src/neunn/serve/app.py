"""The review station's web application: the pages and the HTTP API around one Predictor.

    app = create_app(predictor, store=open_store(store_dir))       # cases kept, reviewers log in (neunn serve)
    app = create_app(predictor, token="s3cret")                     # --ephemeral: nothing kept, one shared token

Routes: ``GET /`` the page (static files: no build step, nothing fetched from the network) — with a store the worklist
and case review (``/login`` to log in), without one the one-sample review page; ``GET /healthz``,
``GET /api/v1/model``, ``POST /api/v1/predict`` (multipart: images and zips of one sample's cells → JSON per cell,
summary and critical alert), ``POST /api/v1/heatmap`` (one image → transparent PNG Grad-CAM overlay), with a store
the accounts routes (accounts.py) and the cases routes (case_api.py), and the OpenAPI schema at ``/openapi.json``
(Swagger UI at ``/docs``). The pages, their static files, ``/healthz`` and the schema reveal nothing and stay open.

Every upload is read into memory under ServeLimits and scored in a worker thread, one request's model work at a time
(the model already uses every core), so the event loop keeps answering. Errors are JSON ``{"error": "..."}``; an
unexpected one is logged and answered with a 500, and the server goes on.
"""

from __future__ import annotations

import hmac
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from neunn import __version__
from neunn.cases.database import CaseStore
from neunn.errors import NeunnError
from neunn.inference.predictor import Predictor
from neunn.serve.accounts import Accounts
from neunn.serve.api_errors import ApiError, install_error_handlers
from neunn.serve.archive import is_zip
from neunn.serve.case_api import case_router
from neunn.serve.limits import ServeLimits
from neunn.serve.results import PredictAnswer
from neunn.serve.station import Station
from neunn.serve.uploads import read_uploads

_PAGE_HEADERS = {  # the page loads nothing from elsewhere, and nothing may frame it
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}
_MULTIPART_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                             "description": "cell images (any format the loader reads) and/or zips of one sample"}},
}}}}}
_ONE_FILE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}}}}}


def create_app(predictor: Predictor, *, store: CaseStore | None = None, token: str | None = None,
               limits: ServeLimits | None = None, model_info: dict[str, Any] | None = None,
               lis_folder: Path | None = None) -> FastAPI:
    """The FastAPI app of the review station for one predictor.

    With a ``store``, cases are kept and every /api/ route but the login needs a named reviewer's login (see
    accounts.py); without one (``--ephemeral``), nothing is kept and ``token``, when set, guards every /api/ route.
    With ``lis_folder`` (a store needed), each case signed is also written there for the LIS (case_api.py)."""
    if store is not None and token is not None:
        raise NeunnError("A shared token is only for --ephemeral serving; with a case store, reviewers log in.")
    if store is None and lis_folder is not None:
        raise NeunnError("--lis-folder writes signed cases, and --ephemeral keeps none: drop one of them.")
    station = Station(predictor, limits or ServeLimits())
    reading = anyio.Semaphore(station.limits.max_concurrent_requests)
    compute = anyio.CapacityLimiter(1)
    static = resources.files("neunn.serve") / "static"
    model_info = {**(model_info or {}), "cases": store is not None}

    def require_token(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(401, "This server needs a token: send the header 'Authorization: Bearer <token>'.",
                           headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="NeuNN review station", version=__version__,
                  description="Neutrophil classification with calibrated confidence, a review bin, critical-finding "
                              "alerts and Grad-CAM heatmaps" + (
                                  "; cases, named reviewers and an audit trail. Every /api/ route but the login needs "
                                  "a session or a bearer token (POST /api/v1/token)." if store is not None else
                                  ". All /api/ routes need the token when one is set."))
    install_error_handlers(app)
    if store is not None:
        accounts = Accounts(store)
        api = [Depends(accounts.reviewer)]
        app.include_router(accounts.router())
        app.include_router(case_router(store, station, accounts, run_name=str(model_info.get("run", "")),
                                       compute=compute, reading=reading, lis_folder=lis_folder))
    else:
        api = [Depends(require_token)]
    pages = {"/": "cases.html" if store is not None else "index.html", "/login": "login.html"}

    @app.middleware("http")
    async def _page_headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path in pages or request.url.path.startswith("/static/"):
            response.headers.update(_PAGE_HEADERS)
        return response

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / pages["/"]), media_type="text/html")

    if store is not None:
        @app.get("/login", include_in_schema=False)
        async def login_page() -> FileResponse:
            return FileResponse(str(static / pages["/login"]), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/healthz", summary="Liveness: the server is up and has a model")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/model", dependencies=api, summary="The model: classes, architecture, calibration, metrics")
    async def model() -> dict[str, Any]:
        return station.model_card(model_info or {})

    @app.post("/api/v1/predict", dependencies=api, openapi_extra=_MULTIPART_BODY,
              responses={200: {"model": PredictAnswer, "description": "every cell's record and the sample summary"}},
              summary="Classify cell images (and zips of one sample's cells); one JSON result per cell")
    async def predict(request: Request, include_images: bool = False) -> JSONResponse:
        async with reading:
            uploads = await read_uploads(request, station.limits)
            status, body = await anyio.to_thread.run_sync(station.score, uploads, include_images, limiter=compute)
        return JSONResponse(body, status_code=status)

    @app.post("/api/v1/heatmap", dependencies=api, openapi_extra=_ONE_FILE_BODY, response_class=Response,
              responses={200: {"content": {"image/png": {}}, "description": "transparent RGBA overlay"}},
              summary="Grad-CAM heatmap of one image for a class (default: the predicted one), as a PNG overlay")
    async def heatmap(request: Request, target: str | None = None) -> Response:
        async with reading:
            upload = (await read_uploads(request, replace(station.limits, max_files=1)))[0]
            if upload.error is not None:
                raise ApiError(upload.status, upload.error, name=upload.name)
            if is_zip(upload.data):
                raise ApiError(415, "Heatmaps are made for one image at a time, not for a zip.", name=upload.name)
            png, used = await anyio.to_thread.run_sync(station.heatmap, upload, target, limiter=compute)
        return Response(png, media_type="image/png", headers={"X-NeuNN-Target": used, "Cache-Control": "no-store"})

    return app
