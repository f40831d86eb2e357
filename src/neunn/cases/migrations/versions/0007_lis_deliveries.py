"""The LIS delivery queue: each signed (or amended) case's results owed to each configured target, retried until
delivered.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "lis_deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("target", sa.String(1024), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(512), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("next_attempt_at", _TZ, nullable=False),
        sa.Column("delivered_at", _TZ, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("lis_deliveries")
