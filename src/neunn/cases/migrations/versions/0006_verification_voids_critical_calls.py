"""Two-level verification and voids: technologist and pathologist roles (every "reviewer" becomes a pathologist, who
keeps every right a reviewer had), a case's submission for verification, voided cases and cells with their reasons,
and the record of critical findings communicated.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_VOID = ("voided_by", "voided_at", "void_reason")


def _void_columns() -> list[sa.Column]:
    # Users as plain ids: SQLite adds a column with a foreign key only by rebuilding the table, and the cases table
    # is referenced by others (users are never deleted).
    return [sa.Column("voided_by", sa.Integer, nullable=True),
            sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("void_reason", sa.String(512), nullable=True)]


def upgrade() -> None:
    op.execute("UPDATE users SET role = 'pathologist' WHERE role = 'reviewer'")
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("submitted_by", sa.Integer, nullable=True))
        batch.add_column(sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
        for column in _void_columns():
            batch.add_column(column)
    with op.batch_alter_table("cells") as batch:
        for column in _void_columns():
            batch.add_column(column)
    op.create_table(
        "critical_calls",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("recipient", sa.String(128), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("communicated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(512), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("critical_calls")
    with op.batch_alter_table("cells") as batch:
        for name in _VOID:
            batch.drop_column(name)
    with op.batch_alter_table("cases") as batch:
        for name in ("submitted_by", "submitted_at", *_VOID):
            batch.drop_column(name)
    op.execute("UPDATE users SET role = 'reviewer' WHERE role IN ('pathologist', 'technologist')")
