"""The model's routes: liveness, the model card, classification of a sample's images, Grad-CAM heatmaps.

    app.include_router(model_api.router, dependencies=[guard])   # guard: a reviewer's login, or the shared token

    GET  /healthz                    liveness (always open)
    GET  /api/v1/model               classes, architecture, calibration, policy, screens, metrics
    POST /api/v1/predict             multipart images and zips of one sample's cells → JSON per cell, summary, alert
    POST /api/v1/heatmap?target=X    one image → transparent PNG Grad-CAM overlay

Every upload is read into memory under ServeLimits and scored in a worker thread, one request's model work at a time
(the model already uses every core), so the event loop keeps answering.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from neunn.serve.api_errors import ApiError, error_responses
from neunn.serve.archive import is_zip
from neunn.serve.deps import ServingDep
from neunn.serve.results import PredictAnswer
from neunn.serve.uploads import read_uploads, upload_body

health_router = APIRouter()  # open: it reveals nothing
router = APIRouter(prefix="/api/v1", tags=["model"])

# A request refused as a whole (uploads.py), or every file of it refused or unreadable (the answer per file).
_UPLOAD_ERRORS = {**error_responses(400, 408), **error_responses(413, 415, 422, or_answer=PredictAnswer)}


@health_router.get("/healthz", summary="Liveness: the server is up and has a model")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/model", summary="The model: classes, architecture, calibration, metrics")
async def model(serving: ServingDep) -> dict[str, Any]:
    return serving.station.model_card(serving.model_card)


@router.post("/predict", openapi_extra=upload_body("files", "cell images (any format the loader reads) and/or zips "
                                                           "of one sample", many=True),
             responses={200: {"model": PredictAnswer, "description": "every cell's record and the sample summary"},
                        **_UPLOAD_ERRORS},
             summary="Classify cell images (and zips of one sample's cells); one JSON result per cell")
async def predict(request: Request, serving: ServingDep, include_images: bool = False) -> JSONResponse:
    async with serving.reading:
        uploads = await read_uploads(request, serving.station.limits)
        status, body = await anyio.to_thread.run_sync(serving.station.score, uploads, include_images,
                                                      limiter=serving.compute)
    return JSONResponse(body, status_code=status)


@router.post("/heatmap", openapi_extra=upload_body("file", "one cell image", many=False), response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "transparent RGBA overlay"},
                        **error_responses(400, 408, 413, 415, 422, 501)},
             summary="Grad-CAM heatmap of one image for a class (default: the predicted one), as a PNG overlay")
async def heatmap(request: Request, serving: ServingDep, target: str | None = None) -> Response:
    station = serving.station
    async with serving.reading:
        upload = (await read_uploads(request, replace(station.limits, max_files=1)))[0]
        if upload.error is not None:
            raise ApiError(upload.status, upload.error, name=upload.name)
        if is_zip(upload.data):
            raise ApiError(415, "Heatmaps are made for one image at a time, not for a zip.", name=upload.name)
        png, used = await anyio.to_thread.run_sync(station.heatmap, upload, target, limiter=serving.compute)
    return Response(png, media_type="image/png", headers={"X-NeuNN-Target": used, "Cache-Control": "no-store"})
