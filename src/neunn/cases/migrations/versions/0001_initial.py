"""The first case store (NeuNN 0.2): users, login tokens, models, cases, cells, audit trail.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
    )
    op.create_table(
        "auth_tokens",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("run", sa.String(256), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=True),
        sa.Column("arch", sa.String(64), nullable=True),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("temperature", sa.Float, nullable=False),
        sa.Column("review_threshold", sa.Float, nullable=False),
        sa.Column("critical_classes", sa.JSON, nullable=False),
        sa.Column("classes", sa.JSON, nullable=False),
        sa.Column("ood_threshold", sa.Float, nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.UniqueConstraint("fingerprint"),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sample_id", sa.String(128), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.Column("signed_by", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("signed_at", _TZ, nullable=True),
    )
    op.create_table(
        "cells",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("image_ext", sa.String(8), nullable=False),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("predicted_label", sa.String(64), nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("probabilities", sa.JSON, nullable=False),
        sa.Column("needs_review", sa.Boolean, nullable=False),
        sa.Column("out_of_domain", sa.Boolean, nullable=True),
        sa.Column("ood_score", sa.Float, nullable=True),
        sa.Column("final_label", sa.String(64), nullable=True),
        sa.Column("decided_by", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("decided_at", _TZ, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", _TZ, nullable=False, index=True),
        sa.Column("user_name", sa.String(64), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=True, index=True),
        sa.Column("cell_id", sa.Integer, sa.ForeignKey("cells.id"), nullable=True),
        sa.Column("from_value", sa.String(128), nullable=True),
        sa.Column("to_value", sa.String(128), nullable=True),
        sa.Column("detail", sa.JSON, nullable=True),
    )


def downgrade() -> None:
    for table in ("audit", "cells", "cases", "models", "auth_tokens", "users"):
        op.drop_table(table)
