"""The API's errors: every one is answered as JSON ``{"error": "one sentence", ...}`` with its HTTP status.

    raise ApiError(415, "Heatmaps are made for one image at a time, not for a zip.", name=upload.name)

install_error_handlers(app) maps ApiError, refused uploads, the case store's errors (with their detail, e.g. the
current state of a cell on a conflict), FastAPI's own errors and anything unexpected (a logged 500; the server goes
on). A 405 names in ``Allow`` every method the path takes, not only those of the first route that matched it.

The OpenAPI schema documents each error status a route can answer with the same body (``error_responses``):

    @router.post("/{case_id}/void", responses=error_responses(400, 403, 409))
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from neunn.cases.errors import CaseError
from neunn.serve.uploads import UploadRefused

log = logging.getLogger("neunn.serve")


class ErrorBody(BaseModel):
    """Every error's JSON body: one sentence, and for some errors their details (a file's name, a cell's state)."""

    model_config = ConfigDict(extra="allow", title="Error")

    error: str


ERROR_MEANINGS = {
    400: "the body could not be read: not JSON (or not UTF-8), or not well-formed multipart",
    401: "no login, or it expired (or a wrong token)",
    403: "not allowed: another role is needed, or a change made with the session cookie lacks its CSRF token",
    404: "there is no such case, cell or user",
    408: "the upload took too long",
    409: "someone changed it first, or the state it is in refuses this (e.g. a signed or void case)",
    413: "too large: too many files, or a file or the request over its limit",
    415: "not an image or a zip (or not multipart/form-data)",
    422: "a parameter or a field is invalid",
    501: "not available on this server",
}


def error_responses(*statuses: int, or_answer: type[BaseModel] | None = None) -> dict[int | str, dict]:
    """FastAPI ``responses=`` for these error statuses: each the JSON ``{"error": ...}`` body, with what it means, or
    with ``or_answer`` the route's own answer too (an upload route answers with a file's status when every file of the
    request failed alone).

    A 422 listed here replaces FastAPI's own validation-error schema: this API answers it as ``{"error": ...}`` too."""
    model = ErrorBody if or_answer is None else ErrorBody | or_answer
    suffix = "; or every file failed: the answer per file" if or_answer is not None else ""
    return {status: {"model": model, "description": ERROR_MEANINGS[status] + suffix} for status in statuses}


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
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return error_response(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()[:3])
        return error_response(422, f"Invalid request parameter(s): {where}.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "Internal error while handling this request; the server is still running.")


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path takes, over all the routes that match it (one route per method in FastAPI;
    Starlette's own 405 names the first route's only)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)
