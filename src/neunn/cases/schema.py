"""The case store's tables, as SQLAlchemy 2 models: users, login tokens, models, cases, cells and the audit trail.

The migrations in ``migrations/versions`` create exactly these tables (a test compares them); change both together.
Times are UTC. Labels are the model's class names. The audit trail is append-only: the application has no call that
updates or deletes a row of it, and database triggers refuse both (see migration 0002).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# technologist: pre-classifies cells and signs cases without a critical finding, or submits them for verification;
# pathologist: verifies and signs every case (one with a critical finding needs one); admin: a pathologist who also
# manages users and may amend any signed case. (Stores made before migration 0006 had "reviewer": now pathologist.)
ROLES = ("technologist", "pathologist", "admin")
# open → (submitted for verification) → signed; open or submitted → void (a wrongly made case, kept with its reason)
CASE_OPEN, CASE_SUBMITTED, CASE_SIGNED, CASE_VOID = "open", "submitted", "signed", "void"


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))  # Argon2id, never the password
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuthToken(Base):
    """A login: a browser session (cookie, with its CSRF token) or an API bearer token. Only the SHA-256 is kept."""

    __tablename__ = "auth_tokens"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "session" or "bearer"
    csrf_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ModelRecord(Base):
    """The model and decision policy that classified cells: run, weights, backend, calibration, thresholds."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the fields below, so each is stored once
    run: Mapped[str] = mapped_column(String(256))
    weights_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    arch: Mapped[str | None] = mapped_column(String(64), nullable=True)
    backend: Mapped[str] = mapped_column(String(32))
    temperature: Mapped[float] = mapped_column(Float)
    review_threshold: Mapped[float] = mapped_column(Float)
    critical_classes: Mapped[list] = mapped_column(JSON)
    classes: Mapped[list] = mapped_column(JSON)
    ood_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    screens: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # cell-type gate, pallor screen (migration 0003)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Case(Base):
    """One sample (a smear) and its review: open until signed; a change after signing is an amendment."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=CASE_OPEN)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    signed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    n_amendments: Mapped[int] = mapped_column(Integer, default=0)  # added by migration 0002
    # migration 0006: the technologist's submission for verification, and a void with its reason. The users are plain
    # ids (users are never deleted): SQLite adds a column with a foreign key only by rebuilding a referenced table.
    submitted_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    voided_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    void_reason: Mapped[str | None] = mapped_column(String(512), nullable=True)


class Cell(Base):
    """One cell of a case: its image (by SHA-256), the model's call, and the reviewer's decision (None = not yet)."""

    __tablename__ = "cells"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(512))
    image_sha256: Mapped[str] = mapped_column(String(64))
    image_ext: Mapped[str] = mapped_column(String(8))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    predicted_label: Mapped[str] = mapped_column(String(64))
    probability: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict] = mapped_column(JSON)
    needs_review: Mapped[bool] = mapped_column(Boolean)
    out_of_domain: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # what each of the model's screens said of the cell, {name: {"value", "flagged"}} (migration 0005; None without)
    screens: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    final_label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)  # bumped by every decision: the conflict check
    # migration 0006: a wrongly uploaded cell, voided with a reason: kept (and in the trail), out of every count (the
    # user a plain id, as for cases)
    voided_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    void_reason: Mapped[str | None] = mapped_column(String(512), nullable=True)


class CriticalCall(Base):
    """A critical finding communicated: to whom, how, when, and who recorded it (migration 0006)."""

    __tablename__ = "critical_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(128))  # e.g. "Dr Lee, ward 5 (on call)"
    method: Mapped[str] = mapped_column(String(16))  # one of CALL_METHODS
    communicated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(String(512), nullable=True)


CALL_METHODS = ("phone", "in_person", "electronic", "other")


class LisDelivery(Base):
    """A signed case's results owed to one LIS target (a folder or a FHIR endpoint), queued in the signature's own
    transaction and retried until delivered, so none is lost (migration 0007). An amendment queues a new one."""

    __tablename__ = "lis_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    target: Mapped[str] = mapped_column(String(1024))  # "folder:/srv/lis/inbox" or "https://lis.example/fhir"
    reason: Mapped[str] = mapped_column(String(16))  # "sign" or "amend"
    state: Mapped[str] = mapped_column(String(16), index=True)  # "pending" or "delivered"
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(512), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEntry(Base):
    """Who did what, when, from what to what. Append-only (no update, no delete; triggers enforce it)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    user_name: Mapped[str | None] = mapped_column(String(64), nullable=True)  # kept as text: survives the user
    action: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True, index=True)
    cell_id: Mapped[int | None] = mapped_column(ForeignKey("cells.id"), nullable=True)
    from_value: Mapped[str | None] = mapped_column(String(128), nullable=True)
    to_value: Mapped[str | None] = mapped_column(String(128), nullable=True)
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)
