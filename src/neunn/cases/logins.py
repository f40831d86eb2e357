"""Logins: browser sessions (a cookie, with a CSRF token for every state-changing call) and API bearer tokens.

    token, csrf = issue_token(db, reviewer, kind="session")     # the cookie's value and the page's CSRF token
    reviewer, login = resolve_token(db, token, kind="session")  # or NotLoggedIn when unknown, expired or disabled
    revoke_token(db, token)                                      # logout
    end_logins(db, reviewer, keep=token)                         # after a password change: the others end

Only each token's SHA-256 is stored, so the database never holds a usable credential; every server process of a lab
sees the same logins.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from neunn.cases.errors import NotLoggedIn
from neunn.cases.schema import AuthToken, User
from neunn.cases.times import as_utc, utc_now
from neunn.cases.users import Reviewer

LIFETIMES = {"session": timedelta(hours=12), "bearer": timedelta(hours=8)}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(db: Session, reviewer: Reviewer, *, kind: str) -> tuple[str, str | None]:
    now = utc_now()
    db.execute(delete(AuthToken).where(AuthToken.expires_at < now))
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24) if kind == "session" else None
    db.add(AuthToken(token_sha256=_digest(token), user_id=reviewer.id, kind=kind, csrf_token=csrf, created_at=now,
                     expires_at=now + LIFETIMES[kind]))
    return token, csrf


def resolve_token(db: Session, token: str, *, kind: str) -> tuple[Reviewer, AuthToken]:
    found = db.execute(select(AuthToken, User).join(User, User.id == AuthToken.user_id)
                       .where(AuthToken.token_sha256 == _digest(token), AuthToken.kind == kind)).first()
    if found is None or as_utc(found[0].expires_at) < utc_now() or not found[1].active:
        raise NotLoggedIn("Not logged in, or the login has expired: log in again.")
    return Reviewer.of(found[1]), found[0]


def revoke_token(db: Session, token: str) -> None:
    db.execute(delete(AuthToken).where(AuthToken.token_sha256 == _digest(token)))


def end_logins(db: Session, reviewer: Reviewer, *, keep: str | None = None) -> None:
    """End every login of a user but ``keep`` (the one that changed the password, say)."""
    query = delete(AuthToken).where(AuthToken.user_id == reviewer.id)
    if keep is not None:
        query = query.where(AuthToken.token_sha256 != _digest(keep))
    db.execute(query)
