"""Keep what a model's screens said of each cell: the cell-type gate's type and the cytoplasm's pallor, so a stored
case shows why a cell was flagged ("looks like: eosinophil", "pale cytoplasm") as the page without a store does.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.add_column(sa.Column("cell_type", sa.String(64), nullable=True))
        batch.add_column(sa.Column("out_of_scope", sa.Boolean, nullable=True))
        batch.add_column(sa.Column("pallor", sa.Float, nullable=True))
        batch.add_column(sa.Column("pale", sa.Boolean, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        for column in ("pale", "pallor", "out_of_scope", "cell_type"):
            batch.drop_column(column)
