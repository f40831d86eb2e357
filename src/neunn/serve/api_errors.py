"""The API's errors: every one is answered as JSON ``{"error": "one sentence", ...}`` with its HTTP status.

    raise ApiError(415, "Heatmaps are made for one image at a time, not for a zip.", name=upload.name)

install_error_handlers(app) maps ApiError, refused uploads, the case store's errors (with their detail, e.g. the
current state of a cell on a conflict), FastAPI's own errors and anything unexpected (a logged 500; the server goes
on).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from neunn.cases.errors import CaseError
from neunn.serve.uploads import UploadRefused

log = logging.getLogger("neunn.serve")


class ApiError(Exception):
    """An error answered as JSON ``{"error": message}`` with an HTTP status (and the file's name when it has one)."""

    def __init__(self, status: int, message: str, *, name: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.name, self.headers = status, name, headers


def error_response(status: int, message: str, *, name: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": message, **({"name": name} if name is not None else {})}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, str(exc), name=exc.name, headers=exc.headers)

    @app.exception_handler(UploadRefused)
    async def _refused(_: Request, exc: UploadRefused) -> JSONResponse:
        return error_response(exc.status, str(exc))

    @app.exception_handler(CaseError)
    async def _case(_: Request, exc: CaseError) -> JSONResponse:
        body = {"error": str(exc), **(exc.detail or {})}
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(body, status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()[:3])
        return error_response(422, f"Invalid request parameter(s): {where}.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "Internal error while handling this request; the server is still running.")
