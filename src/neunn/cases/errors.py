"""The case store's errors: each a NeunnError (one sentence for the user) with the HTTP status the API answers."""

from __future__ import annotations

from typing import Any

from neunn.errors import NeunnError


class CaseError(NeunnError):
    status = 400

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class NotFound(CaseError):
    status = 404


class NotAllowed(CaseError):
    status = 403


class NotLoggedIn(CaseError):
    status = 401


class Conflict(CaseError):
    """Someone else changed it first, or the case is in a state that refuses the change (e.g. signed)."""

    status = 409


class Invalid(CaseError):
    status = 422
