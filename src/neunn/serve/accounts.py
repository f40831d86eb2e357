"""Who is calling: browser sessions (an HttpOnly, SameSite=Strict cookie plus a CSRF token) and the OAuth2 password flow
for API clients (``POST /api/v1/token`` → bearer token), both over the case store's users and logins.

    app.include_router(accounts.router)          # the login routes; the guards are deps.CurrentReviewer/CurrentAdmin

Every state-changing call made with the cookie must carry the session's CSRF token in ``X-CSRF-Token`` (the page
reads it from ``GET /api/v1/session``), and a login must be JSON from this origin: another site can neither read the
token nor send JSON cross-site without the browser asking first. Bearer calls need no CSRF token (browsers never add
the header by themselves). The cookie is Secure whenever the request came over HTTPS (behind a TLS proxy too, as
uvicorn reads X-Forwarded-Proto from the proxy).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request, Response
from pydantic import BaseModel

from neunn.cases.errors import NotAllowed, NotLoggedIn
from neunn.cases.logins import LIFETIMES, issue_token, resolve_token, revoke_token
from neunn.cases.times import iso
from neunn.cases.users import check_password, list_users
from neunn.serve.deps import SESSION_COOKIE, CurrentAdmin, StoreDep, Transaction, current_reviewer

router = APIRouter(prefix="/api/v1", tags=["accounts"])


class Credentials(BaseModel):
    name: str
    password: str


def _same_origin(request: Request) -> bool:
    """False only when the browser says the request came from another site (no Origin header: not a browser's)."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


@router.post("/session", summary="Log in (JSON name and password); sets the session cookie")
def login(credentials: Credentials, request: Request, response: Response, db: Transaction) -> dict[str, Any]:
    if not _same_origin(request):
        raise NotAllowed("A login must come from this server's own page.")
    reviewer = check_password(db, credentials.name, credentials.password)
    token, csrf = issue_token(db, reviewer, kind="session")
    response.set_cookie(SESSION_COOKIE, token, max_age=int(LIFETIMES["session"].total_seconds()),
                        httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
    return {"user": reviewer.name, "role": reviewer.role, "csrf_token": csrf}


@router.get("/session", summary="Who is logged in, and the session's CSRF token")
def session(request: Request, db: Transaction) -> dict[str, Any]:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise NotLoggedIn("Not logged in.")
    reviewer, login = resolve_token(db, cookie, kind="session")
    return {"user": reviewer.name, "role": reviewer.role, "csrf_token": login.csrf_token,
            "expires_at": iso(login.expires_at)}


@router.delete("/session", summary="Log out (the session ends on the server too)")
def logout(request: Request, response: Response, store: StoreDep) -> dict[str, str]:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        current_reviewer(request, store, None)  # a logout is a state change: it needs the CSRF token too
        with store.transaction() as db:
            revoke_token(db, cookie)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"status": "logged out"}


@router.post("/token", summary="OAuth2 password flow: form fields username and password → bearer token")
def token(username: Annotated[str, Form()], password: Annotated[str, Form()], db: Transaction) -> dict[str, Any]:
    reviewer = check_password(db, username, password)
    access, _ = issue_token(db, reviewer, kind="bearer")
    return {"access_token": access, "token_type": "bearer", "expires_in": int(LIFETIMES["bearer"].total_seconds())}


@router.get("/users", summary="The users and their roles (admins only)")
def users(_: CurrentAdmin, db: Transaction) -> dict[str, Any]:
    return {"users": [{**u, "created_at": iso(u["created_at"])} for u in list_users(db)]}
