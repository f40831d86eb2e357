"""Named reviewers: add, list, disable, and check a login. Passwords are kept only as Argon2id hashes.

    add_user(db, "dr.ruiz", "s3cret-passphrase", role="reviewer")
    reviewer = check_password(db, "dr.ruiz", "s3cret-passphrase")      # a Reviewer, or NotLoggedIn

Roles (schema.ROLES): a ``technologist`` reads every case, creates cases, uploads cells, decides (pre-classifies), voids
a wrongly uploaded cell or case, signs a case without a critical finding and submits one with a critical finding for
verification; a ``pathologist`` also verifies and signs every case (a critical finding needs their signature) and
amends the cases they signed; an ``admin`` is a pathologist who also manages users (roles, disable and re-enable,
password resets) and may amend any signed case. Everyone changes their own password. See docs/serving.md.

    set_role(db, "ana", "pathologist", by=admin);  set_active(db, "ana", True, by=admin)
    change_password(db, reviewer, "old passphrase", "new passphrase")    # then logins.end_logins(..., keep=token)
    reset_password(db, admin, "ana", "temporary passphrase")             # ends all of ana's logins
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from neunn.cases.errors import Conflict, Invalid, NotAllowed, NotFound, NotLoggedIn
from neunn.cases.schema import ROLES, AuthToken, User
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

    @property
    def is_pathologist(self) -> bool:
        """May verify and sign any case, a critical finding included (pathologists and admins)."""
        return self.role in ("pathologist", "admin")

    @classmethod
    def of(cls, user: User) -> Reviewer:
        return cls(user.id, user.name, user.role)


def _check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"The password is too short: at least {MIN_PASSWORD_LENGTH} characters.")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise Invalid(f"Unknown role {role!r}: choose {', '.join(ROLES)}.")


def add_user(db: Session, name: str, password: str, *, role: str = "technologist") -> Reviewer:
    name = name.strip()
    if not name or len(name) > 64 or any(ch.isspace() for ch in name):
        raise Invalid("A user name is 1 to 64 characters without spaces.")
    _check_role(role)
    _check_new_password(password)
    if db.scalar(select(User).where(User.name == name)) is not None:
        raise Conflict(f"There is already a user named {name!r}.")
    user = User(name=name, role=role, password_hash=_HASHER.hash(password), active=True, created_at=utc_now())
    db.add(user)
    db.flush()
    return Reviewer.of(user)


def list_users(db: Session) -> list[dict]:
    return [{"name": u.name, "role": u.role, "active": u.active, "created_at": u.created_at}
            for u in db.scalars(select(User).order_by(User.name))]


def _user(db: Session, name: str) -> User:
    user = db.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"There is no user named {name!r}.")
    return user


def _keep_an_admin(db: Session, user: User, *, role: str, active: bool) -> None:
    """Refuse a change that would leave the store without an active admin (nobody could manage users again)."""
    if user.role == "admin" and user.active and not (role == "admin" and active):
        admins = db.scalar(select(func.count()).select_from(User).where(User.role == "admin", User.active.is_(True)))
        if admins <= 1:
            raise Conflict(f"{user.name} is the only active admin; make another admin first.")


def _end_logins(db: Session, user_id: int) -> None:
    db.execute(delete(AuthToken).where(AuthToken.user_id == user_id))


def set_active(db: Session, name: str, active: bool, *, by: Reviewer | None = None) -> Reviewer:
    """Disable (their logins end now) or re-enable a user; ``by`` an admin (None: the command line, which has the
    store's files)."""
    if by is not None and not by.is_admin:
        raise NotAllowed("Only an admin may disable or re-enable users.")
    user = _user(db, name)
    _keep_an_admin(db, user, role=user.role, active=active)
    user.active = active
    if not active:
        _end_logins(db, user.id)
    return Reviewer.of(user)


def set_role(db: Session, name: str, role: str, *, by: Reviewer | None = None) -> Reviewer:
    """Change a user's role (their logins go on with the new role at once); ``by`` as for set_active."""
    if by is not None and not by.is_admin:
        raise NotAllowed("Only an admin may change roles.")
    _check_role(role)
    user = _user(db, name)
    _keep_an_admin(db, user, role=role, active=user.active)
    user.role = role
    return Reviewer.of(user)


def change_password(db: Session, who: Reviewer, current: str, new: str) -> None:
    """A user changes their own password (the current one is checked); the caller ends their other logins
    (logins.end_logins)."""
    user = _user(db, who.name)
    try:
        _HASHER.verify(user.password_hash, current)
    except (VerificationError, InvalidHashError):
        raise NotAllowed("The current password is wrong; nothing was changed.") from None
    _check_new_password(new)
    if new == current:
        raise Invalid("The new password is the current one; choose another.")
    user.password_hash = _HASHER.hash(new)


def reset_password(db: Session, name: str, password: str, *, by: Reviewer | None = None) -> None:
    """An admin sets a user's password (e.g. a temporary one, given in person); all their logins end."""
    if by is not None and not by.is_admin:
        raise NotAllowed("Only an admin may reset another user's password.")
    _check_new_password(password)
    user = _user(db, name)
    user.password_hash = _HASHER.hash(password)
    _end_logins(db, user.id)


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
