"""Who is calling: browser sessions (an HttpOnly, SameSite=Strict cookie plus a CSRF token) and the OAuth2 password flow
for API clients (``POST /api/v1/token`` → bearer token), both over the case store's users and logins.

    app.include_router(accounts.router)          # the login routes; the guards are deps.CurrentReviewer/CurrentAdmin

    POST   /api/v1/session  ·  GET /api/v1/session  ·  DELETE /api/v1/session     log in, who am I, log out
    PUT    /api/v1/session/password  {"current_password", "new_password"}      your own (your other logins end)
    POST   /api/v1/token                                                      OAuth2 password flow → bearer token
    GET    /api/v1/users  ·  POST /api/v1/users  {"name", "password", "role"}  (admins)
    PATCH  /api/v1/users/{name}  {"role"?, "active"?}                         role change, disable, re-enable (admins)
    PUT    /api/v1/users/{name}/password  {"password"}                        reset; all their logins end (admins)

Every state-changing call made with the cookie must carry the session's CSRF token in ``X-CSRF-Token`` (the page
reads it from ``GET /api/v1/session``), and a login must be JSON from this origin: another site can neither read the
token nor send JSON cross-site without the browser asking first. Bearer calls need no CSRF token (browsers never add
the header by themselves). The cookie is Secure whenever the request came over HTTPS (behind a TLS proxy too, as
uvicorn reads X-Forwarded-Proto from the proxy).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from neunn.cases.errors import Invalid, NotAllowed, NotLoggedIn
from neunn.cases.logins import (
    LIFETIMES,
    end_logins,
    issue_token,
    resolve_token,
    revoke_token,
)
from neunn.cases.schema import ROLES
from neunn.cases.times import iso
from neunn.cases.users import (
    MIN_PASSWORD_LENGTH,
    add_user,
    change_password,
    check_password,
    list_users,
    reset_password,
    set_active,
    set_role,
)
from neunn.serve.api_errors import error_responses
from neunn.serve.deps import (
    BEARER,
    SESSION_COOKIE,
    CurrentAdmin,
    CurrentReviewer,
    StoreDep,
    Transaction,
    current_reviewer,
)
from neunn.serve.text_fields import NO_SPACES

router = APIRouter(prefix="/api/v1", tags=["accounts"], responses=error_responses(401, 422))
_CHANGE = error_responses(400, 403)  # a body that cannot be read; another role, or a cookie change without CSRF


class Credentials(BaseModel):
    name: str
    password: str


Role = Literal[ROLES]  # type: ignore[valid-type]
UserName = Annotated[str, PathParam(min_length=1, max_length=64, description="the user's name")]


NewPassword = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)]


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: NewPassword


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=NO_SPACES, description="no spaces")
    password: NewPassword
    role: Role = "technologist"


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # left out means "unchanged"; null is not a value


class UserChange(BaseModel):
    """What an admin changes of a user: the role, and whether they may log in (False disables, True re-enables); at
    least one of them."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["role"]}, {"required": ["active"]}]})

    role: Role = Field(None, json_schema_extra=_no_default)  # type: ignore[assignment]
    active: StrictBool = Field(None, json_schema_extra=_no_default)  # type: ignore[assignment]  # not 0 or "yes"


class PasswordReset(BaseModel):
    password: NewPassword = Field(description="a temporary password, given to the user in person")


def _user_json(db, name: str) -> dict[str, Any]:
    user = next(u for u in list_users(db) if u["name"] == name)
    return {**user, "created_at": iso(user["created_at"])}


def _same_origin(request: Request) -> bool:
    """False only when the browser says the request came from another site (no Origin header: not a browser's)."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


@router.post("/session", responses=_CHANGE, summary="Log in (JSON name and password); sets the session cookie")
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


@router.delete("/session", responses=error_responses(403), summary="Log out (the session ends on the server too)")
def logout(request: Request, response: Response, store: StoreDep) -> dict[str, str]:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        current_reviewer(request, store, None)  # a logout is a state change: it needs the CSRF token too
        with store.transaction() as db:
            revoke_token(db, cookie)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"status": "logged out"}


@router.post("/token", responses=error_responses(400),
             summary="OAuth2 password flow: form fields username and password → bearer token")
def token(username: Annotated[str, Form()], password: Annotated[str, Form()], db: Transaction) -> dict[str, Any]:
    reviewer = check_password(db, username, password)
    access, _ = issue_token(db, reviewer, kind="bearer")
    return {"access_token": access, "token_type": "bearer", "expires_in": int(LIFETIMES["bearer"].total_seconds())}


@router.put("/session/password", responses=_CHANGE,
            summary="Change your own password (the current one is checked); your other logins end")
def put_own_password(body: PasswordChange, request: Request, who: CurrentReviewer, db: Transaction,
                     bearer: str | None = Depends(BEARER)) -> dict[str, str]:
    change_password(db, who, body.current_password, body.new_password)
    end_logins(db, who, keep=bearer or request.cookies.get(SESSION_COOKIE))
    return {"status": "password changed"}


@router.get("/users", responses=error_responses(403), summary="The users and their roles (admins only)")
def users(_: CurrentAdmin, db: Transaction) -> dict[str, Any]:
    return {"users": [{**u, "created_at": iso(u["created_at"])} for u in list_users(db)]}


@router.post("/users", status_code=201, responses={**_CHANGE, **error_responses(409)},
             summary="Add a user with a role (admins only)")
def post_user(body: NewUser, _: CurrentAdmin, db: Transaction) -> dict[str, Any]:
    user = add_user(db, body.name, body.password, role=body.role)
    return _user_json(db, user.name)


@router.patch("/users/{name}", responses={**_CHANGE, **error_responses(404, 409)},
              summary="Change a user's role, disable or re-enable them (admins only)")
def patch_user(name: UserName, body: UserChange, admin: CurrentAdmin, db: Transaction) -> dict[str, Any]:
    if body.role is None and body.active is None:
        raise Invalid("Say what to change: a role, or active true (re-enable) or false (disable).")
    if body.role is not None:
        set_role(db, name, body.role, by=admin)
    if body.active is not None:
        set_active(db, name, body.active, by=admin)
    return _user_json(db, name)


@router.put("/users/{name}/password", responses={**_CHANGE, **error_responses(404)},
            summary="Reset a user's password (admins only); all their logins end")
def put_user_password(name: UserName, body: PasswordReset, admin: CurrentAdmin, db: Transaction) -> dict[str, str]:
    reset_password(db, name, body.password, by=admin)
    return {"status": f"password of {name} reset; their logins have ended"}
