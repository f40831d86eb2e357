"""Named reviewers: add, list, disable, and check a login. Passwords are kept only as Argon2id hashes.

    add_user(db, "dr.ruiz", "s3cret-passphrase", role="reviewer")
    reviewer = check_password(db, "dr.ruiz", "s3cret-passphrase")      # a Reviewer, or NotLoggedIn

Roles: a ``reviewer`` reads every case, creates cases, uploads cells, decides, signs and amends the cases they signed;
an ``admin`` may also amend any signed case and manage users. See docs/serving.md's security table.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from neunn.cases.errors import Conflict, Invalid, NotFound, NotLoggedIn
from neunn.cases.schema import ROLES, User
from neunn.cases.times import utc_now

MIN_PASSWORD_LENGTH = 10
_HASHER = PasswordHasher()  # Argon2id with argon2-cffi's recommended cost (RFC 9106's second choice)
_DUMMY_HASH = _HASHER.hash("a password nobody has")  # verified for unknown names: no timing hint that a name exists


@dataclass(frozen=True)
class Reviewer:
    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def of(cls, user: User) -> Reviewer:
        return cls(user.id, user.name, user.role)


def add_user(db: Session, name: str, password: str, *, role: str = "reviewer") -> Reviewer:
    name = name.strip()
    if not name or len(name) > 64 or any(ch.isspace() for ch in name):
        raise Invalid("A user name is 1 to 64 characters without spaces.")
    if role not in ROLES:
        raise Invalid(f"Unknown role {role!r}: choose {' or '.join(ROLES)}.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"The password is too short: at least {MIN_PASSWORD_LENGTH} characters.")
    if db.scalar(select(User).where(User.name == name)) is not None:
        raise Conflict(f"There is already a user named {name!r}.")
    user = User(name=name, role=role, password_hash=_HASHER.hash(password), active=True, created_at=utc_now())
    db.add(user)
    db.flush()
    return Reviewer.of(user)


def list_users(db: Session) -> list[dict]:
    return [{"name": u.name, "role": u.role, "active": u.active, "created_at": u.created_at}
            for u in db.scalars(select(User).order_by(User.name))]


def set_active(db: Session, name: str, active: bool) -> None:
    user = db.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"There is no user named {name!r}.")
    user.active = active


def check_password(db: Session, name: str, password: str) -> Reviewer:
    """The reviewer whose name and password these are; NotLoggedIn (one message for every failure) otherwise."""
    user = db.scalar(select(User).where(User.name == name.strip()))
    try:
        _HASHER.verify(user.password_hash if user is not None else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        user = None
    if user is None or not user.active:
        raise NotLoggedIn("Wrong user name or password (or the account is disabled).")
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
    return Reviewer.of(user)
