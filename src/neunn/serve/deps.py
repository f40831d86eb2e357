"""What a route needs, as FastAPI dependency providers: the serving context, the case store, one transaction and the
caller.

    @router.get("/cases/{case_id}")
    def read_case(case_id: CaseId, db: Transaction, _: CurrentReviewer) -> dict: ...

``create_app`` puts one ``Serving`` on ``app.state``; every provider reads it from the request, so the routers are
module-level objects (``router = APIRouter(...)``) that any app built by ``create_app`` includes. ``Transaction`` is
one database transaction per request, committed when the route returns and before the response leaves (a failed
commit is an error answer, never a lost write), rolled back when the route raises.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer
from sqlalchemy.orm import Session

from neunn.cases.casework import ModelInfo
from neunn.cases.database import CaseStore
from neunn.cases.errors import NotAllowed, NotLoggedIn
from neunn.cases.lis_delivery import LisTarget
from neunn.cases.logins import resolve_token
from neunn.cases.users import Reviewer
from neunn.serve.api_errors import ApiError
from neunn.serve.presence import Presence
from neunn.serve.station import Station

SESSION_COOKIE = "neunn_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BEARER = OAuth2PasswordBearer(tokenUrl="/api/v1/token", auto_error=False)  # the OpenAPI schema's login


@dataclass(frozen=True)
class Serving:
    """Everything one review station serves with: the model, the case store (None with --ephemeral), the shared token
    (--ephemeral only), the request limits, the model record cases keep and where signed cases go for the LIS."""

    station: Station
    store: CaseStore | None
    token: str | None
    reading: anyio.Semaphore  # how many uploads are read at once
    compute: anyio.CapacityLimiter  # one request's model work at a time: the model already uses every core
    model_card: dict[str, Any]  # GET /api/v1/model's facts about the run
    case_model: ModelInfo | None  # the model and policy in force, as each case's cells record them
    lis_targets: tuple[LisTarget, ...]  # where signed cases' results go (cases.lis_delivery)
    presence: Presence = field(default_factory=Presence)  # who has each case open (live updates)


def get_serving(request: Request) -> Serving:
    return request.app.state.serving


ServingDep = Annotated[Serving, Depends(get_serving)]


def get_store(serving: ServingDep) -> CaseStore:
    if serving.store is None:  # the case routes are only included with a store; this guards a misuse
        raise ApiError(404, "This server keeps no cases (--ephemeral).")
    return serving.store


StoreDep = Annotated[CaseStore, Depends(get_store)]


def transaction(store: StoreDep) -> Iterator[Session]:
    with store.transaction() as db:
        yield db


# scope="function": committed when the route returns, before the response is sent.
Transaction = Annotated[Session, Depends(transaction, scope="function")]


def current_reviewer(request: Request, store: StoreDep, bearer: str | None = Depends(BEARER)) -> Reviewer:
    """The logged-in reviewer of this request (bearer token or session cookie), or 401; 403 on a missing CSRF token.

    Its own short transaction: a route that then reads an upload or runs the model holds no database lock."""
    if bearer:
        with store.transaction() as db:
            return resolve_token(db, bearer, kind="bearer")[0]
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise NotLoggedIn("Log in first: this call needs a session (the login page) or a bearer token "
                          "(POST /api/v1/token).")
    with store.transaction() as db:
        reviewer, login = resolve_token(db, cookie, kind="session")
    if request.method not in _SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER, "")
        if not (login.csrf_token and hmac.compare_digest(given.encode(), login.csrf_token.encode())):
            raise NotAllowed(f"This change needs the session's {CSRF_HEADER} header (reload the page).")
    return reviewer


CurrentReviewer = Annotated[Reviewer, Depends(current_reviewer)]


def current_admin(reviewer: CurrentReviewer) -> Reviewer:
    if not reviewer.is_admin:
        raise NotAllowed("Only an admin may do this.")
    return reviewer


CurrentAdmin = Annotated[Reviewer, Depends(current_admin)]


_SHARED_TOKEN = HTTPBearer(auto_error=False, description="the token the server was started with (--token)")


def shared_token(serving: ServingDep,
                 credentials: HTTPAuthorizationCredentials | None = Depends(_SHARED_TOKEN)) -> None:
    """The guard of an --ephemeral server's API: the shared token, when one is set."""
    if serving.token is None:
        return
    given = credentials.credentials.strip() if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), serving.token.encode()):
        raise ApiError(401, "This server needs a token: send the header 'Authorization: Bearer <token>'.",
                       headers={"WWW-Authenticate": "Bearer"})
