"""Keep what every screen said of a cell in one JSON column, ``screens`` ({name: {"value", "flagged"}}), so that a new
kind of screen needs no migration; the rows of the out-of-domain score, the cell-type gate and the pallor screen move
into it unchanged.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (screen, value column, verdict column) as 0001 and 0004 laid them; the out-of-domain verdict is out_of_domain itself
_MOVED = (("out_of_domain", "ood_score", "out_of_domain"), ("cell_type_gate", "cell_type", "out_of_scope"),
          ("pallor_screen", "pallor", "pale"))
_OLD = ("ood_score", "cell_type", "out_of_scope", "pallor", "pale")


def _cells(*names: str) -> sa.Table:
    types = {"ood_score": sa.Float, "cell_type": sa.String(64), "out_of_scope": sa.Boolean, "pallor": sa.Float,
             "pale": sa.Boolean, "out_of_domain": sa.Boolean, "screens": sa.JSON}
    return sa.table("cells", sa.column("id", sa.Integer), *(sa.column(n, types[n]) for n in names))


def upgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.add_column(sa.Column("screens", sa.JSON, nullable=True))
    cells = _cells("out_of_domain", "screens", *_OLD)
    conn = op.get_bind()
    rows = conn.execute(sa.select(cells.c.id, cells.c.out_of_domain, *(cells.c[n] for n in _OLD))).mappings().all()
    for row in rows:
        screens = {name: {"value": row[value], "flagged": bool(row[verdict])}
                   for name, value, verdict in _MOVED if row[value] is not None}
        if screens:
            conn.execute(sa.update(cells).where(cells.c.id == row["id"]).values(screens=screens))
    with op.batch_alter_table("cells") as batch:
        for column in _OLD:
            batch.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.add_column(sa.Column("ood_score", sa.Float, nullable=True))
        batch.add_column(sa.Column("cell_type", sa.String(64), nullable=True))
        batch.add_column(sa.Column("out_of_scope", sa.Boolean, nullable=True))
        batch.add_column(sa.Column("pallor", sa.Float, nullable=True))
        batch.add_column(sa.Column("pale", sa.Boolean, nullable=True))
    cells = _cells("screens", *_OLD)
    conn = op.get_bind()
    for row in conn.execute(sa.select(cells.c.id, cells.c.screens)).mappings().all():
        screens = row["screens"] or {}
        values = {}
        for name, value, verdict in _MOVED:
            if name in screens:
                values[value] = screens[name].get("value")
                if verdict != "out_of_domain":
                    values[verdict] = screens[name].get("flagged")
        if values:
            conn.execute(sa.update(cells).where(cells.c.id == row["id"]).values(**values))
    with op.batch_alter_table("cells") as batch:
        batch.drop_column("screens")
