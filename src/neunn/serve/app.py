"""The review station's web application: the page and the HTTP API around one Predictor.

    app = create_app(Predictor.from_run("runs/b7"), token="s3cret")      # then uvicorn.run(app, host="127.0.0.1")

Routes: ``GET /`` the review page (static files: no build step, nothing fetched from the network), ``GET /healthz``,
``GET /api/v1/model``, ``POST /api/v1/predict`` (multipart: images and zips of one sample's cells → JSON per cell,
summary and critical alert), ``POST /api/v1/heatmap`` (one image → transparent PNG Grad-CAM overlay), and the OpenAPI
schema at ``/openapi.json`` (Swagger UI at ``/docs``). With a token, every ``/api/`` call needs
``Authorization: Bearer <token>``; the page, its static files, ``/healthz`` and the schema reveal nothing and stay open.

Every upload is read into memory under ServeLimits and scored in a worker thread, one request's model work at a time
(the model already uses every core), so the event loop keeps answering. Errors are JSON ``{"error": "..."}``; an
unexpected one is logged and answered with a 500, and the server goes on.
"""

from __future__ import annotations

import base64
import hmac
import io
import logging
import threading
from dataclasses import replace
from importlib import resources
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

from neunn import NEUTROPHIL_CLASSES, __version__
from neunn.data.image_io import UnreadableImage
from neunn.errors import NeunnError
from neunn.inference.predictor import Predictor
from neunn.serve.archive import ZipRefused, expand_zip, is_zip
from neunn.serve.limits import ServeLimits
from neunn.serve.results import (
    CLASS_NAMES,
    OOD_WARNING_MIN_CELLS,
    OOD_WARNING_SHARE,
    cell_result,
    error_result,
    error_status,
    normal_class,
    sample_summary,
)
from neunn.serve.uploads import Upload, UploadRefused, read_uploads

log = logging.getLogger("neunn.serve")

_SCORE_BATCH = 64
_OVERLAY_MAX_SIDE = 1024
_PAGE_HEADERS = {  # the page loads nothing from elsewhere, and nothing may frame it
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}
_BROWSER_IMAGES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"),
                   (b"BM", "image/bmp"))
_MULTIPART_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                             "description": "cell images (any format the loader reads) and/or zips of one sample"}},
}}}}}
_ONE_FILE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}}}}}


class ApiError(Exception):
    """An error answered as JSON ``{"error": message}`` with an HTTP status (and the file's name when it has one)."""

    def __init__(self, status: int, message: str, *, name: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.name, self.headers = status, name, headers


def _error_response(status: int, message: str, *, name: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": message, **({"name": name} if name is not None else {})}
    return JSONResponse(body, status_code=status, headers=headers)


def _browser_data_url(data: bytes) -> str | None:
    """The bytes as a data: URL when a browser can show them (zip entries the page cannot read itself)."""
    mime = next((m for magic, m in _BROWSER_IMAGES if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}" if mime else None


class _Station:
    """The predictor with what serving adds: limits, the expansion of zips, summaries and a lazily built Grad-CAM."""

    def __init__(self, predictor: Predictor, limits: ServeLimits) -> None:
        self.predictor, self.limits = predictor, limits
        self._cam: Any = None
        self._cam_lock = threading.Lock()

    def expand(self, uploads: list[Upload]) -> list[tuple[Upload, int, bool]]:
        """Every cell of the request, zips expanded in place: (cell, index of its file part, whether from a zip)."""
        cells: list[tuple[Upload, int, bool]] = []
        budget = self.limits.max_unzipped_bytes
        for index, upload in enumerate(uploads):
            if upload.error is not None or not is_zip(upload.data):
                cells.append((upload, index, False))
                continue
            try:
                entries = expand_zip(upload.name, upload.data, max_cells=self.limits.max_files, max_bytes=budget,
                                     max_entry_bytes=self.limits.max_file_bytes)
            except ZipRefused as exc:
                cells.append((Upload(upload.name, error=str(exc), status=exc.status), index, False))
                continue
            budget -= sum(len(e.data) for e in entries)
            cells.extend((entry, index, True) for entry in entries)
            upload.data = b""  # the entries hold the content now
        if len(cells) > self.limits.max_files:
            raise UploadRefused(413, f"Too many files in one request: {len(cells)} cells, at most "
                                     f"{self.limits.max_files} (zip contents included).")
        return cells

    def score(self, uploads: list[Upload], include_images: bool) -> tuple[int, dict[str, Any]]:
        """The JSON body (and its status) for a predict request: per-cell results, summary and alert."""
        cells = self.expand(uploads)
        readable = [(u.name, u.data) for u, _, _ in cells if u.error is None]
        predictions = iter([p for i in range(0, len(readable), _SCORE_BATCH)
                            for p in self.predictor.predict_sources(readable[i : i + _SCORE_BATCH])])
        results = []
        for upload, index, in_zip in cells:
            if upload.error is not None:
                result = error_result(upload.name, upload.error, upload.status)
            else:
                result = cell_result(next(predictions), self.predictor.classes)
                if include_images and in_zip and result["status"] == 200:
                    result["image"] = _browser_data_url(upload.data)
            results.append({**result, "upload": index, "in_zip": in_zip})
        classified = [r for r in results if r["status"] == 200]
        summary = sample_summary([(r["label"], r["needs_review"], r["out_of_domain"]) for r in classified],
                                 classes=self.predictor.classes,
                                 critical_classes=self.predictor.policy.critical_classes)
        body = {"n_files": len(results), "n_failed": len(results) - len(classified), "results": results,
                "summary": summary}
        return (200 if classified else results[0]["status"]), body

    def gradcam(self) -> Any:
        with self._cam_lock:
            if self._cam is None:
                from neunn.inference.heatmap import GradCam  # imported here: Captum loads only when a heatmap is asked for

                self._cam = GradCam.for_predictor(self.predictor) or False
            return self._cam or None

    def heatmap(self, upload: Upload, target: str | None) -> tuple[bytes, str]:
        """A PNG Grad-CAM overlay of one image, for ``target`` or else the predicted class, and the class used."""
        from neunn.inference.heatmap import overlay_png

        cam = self.gradcam()
        if cam is None:
            raise ApiError(501, "Heatmaps are not available: this backend has no PyTorch weights to explain.")
        try:
            pixels = self.predictor.load_pixels(upload.data)  # the one decode, prepared as the model was trained
        except UnreadableImage as exc:
            raise ApiError(error_status(str(exc)), str(exc), name=upload.name) from None
        with Image.open(io.BytesIO(upload.data)) as header:  # the overlay keeps the upload's shape: size, no decode
            width, height = header.size
        if target is None:
            target = self.predictor.classes[int(self.predictor.probabilities(pixels.unsqueeze(0))[0].argmax())]
        try:
            heat = cam.heat(pixels, target=target)
        except NeunnError as exc:
            raise ApiError(422, str(exc)) from None
        scale = min(1.0, _OVERLAY_MAX_SIDE / max(width, height))
        return overlay_png(heat, size=(max(1, round(width * scale)), max(1, round(height * scale)))), target

    def model_card(self, extra: dict[str, Any]) -> dict[str, Any]:
        """What ``GET /api/v1/model`` tells: classes, architecture, calibration, thresholds, metrics and limits."""
        p, meta = self.predictor, self.predictor.meta
        order = [c for c in NEUTROPHIL_CLASSES if c in p.classes]
        order += [c for c in p.classes if c not in NEUTROPHIL_CLASSES]
        return {
            "arch": meta.get("arch"), "img_size": p.img_size, "classes": p.classes, "display_order": order,
            "class_names": {c: CLASS_NAMES.get(c, c) for c in p.classes}, "backend": p.backend,
            "critical_classes": sorted(p.policy.critical_classes), "review_threshold": p.policy.review_threshold,
            "policy": p.policy.as_dict(),
            "normal_class": normal_class(p.classes),
            "out_of_domain": ({k: v for k, v in p.ood.as_dict().items() if k != "classes_fitted"}
                              if p.ood is not None else None),
            "ood_warning": {"min_cells": OOD_WARNING_MIN_CELLS, "min_share": OOD_WARNING_SHARE},
            "calibration": {"temperature": p.temperature, **meta.get("calibration", {})},
            "checkpoint": {"kind": meta.get("kind"), "epoch": meta.get("epoch"),
                           "neunn_version": meta.get("neunn_version")},
            "validation": meta.get("val", {}), **extra, "limits": self.limits.as_dict(), "server_version": __version__,
        }


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc.status, str(exc), name=exc.name, headers=exc.headers)

    @app.exception_handler(UploadRefused)
    async def _refused(_: Request, exc: UploadRefused) -> JSONResponse:
        return _error_response(exc.status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()[:3])
        return _error_response(422, f"Invalid request parameter(s): {where}.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error_response(500, "Internal error while handling this request; the server is still running.")


def create_app(predictor: Predictor, *, token: str | None = None, limits: ServeLimits | None = None,
               model_info: dict[str, Any] | None = None) -> FastAPI:
    """The FastAPI app of the review station for one predictor; ``token`` guards every /api/ route."""
    station = _Station(predictor, limits or ServeLimits())
    reading = anyio.Semaphore(station.limits.max_concurrent_requests)
    compute = anyio.CapacityLimiter(1)
    static = resources.files("neunn.serve") / "static"

    def require_token(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(401, "This server needs a token: send the header 'Authorization: Bearer <token>'.",
                           headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="NeuNN review station", version=__version__,
                  description="Neutrophil classification with calibrated confidence, a review bin, critical-finding "
                              "alerts and Grad-CAM heatmaps. All /api/ routes need the token when one is set.")
    _install_error_handlers(app)
    api = [Depends(require_token)]

    @app.middleware("http")
    async def _page_headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith("/static/"):
            response.headers.update(_PAGE_HEADERS)
        return response

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/healthz", summary="Liveness: the server is up and has a model")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/model", dependencies=api, summary="The model: classes, architecture, calibration, metrics")
    async def model() -> dict[str, Any]:
        return station.model_card(model_info or {})

    @app.post("/api/v1/predict", dependencies=api, openapi_extra=_MULTIPART_BODY,
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
