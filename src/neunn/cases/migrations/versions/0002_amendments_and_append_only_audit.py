"""Count amendments per case, and make the audit trail append-only in the database itself.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_MESSAGE = "the audit trail is append-only"


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("n_amendments", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE cases SET n_amendments = (SELECT count(*) FROM audit "
               "WHERE audit.case_id = cases.id AND audit.action = 'amend')")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""CREATE FUNCTION neunn_audit_append_only() RETURNS trigger AS $$
                       BEGIN RAISE EXCEPTION '{_MESSAGE}'; END; $$ LANGUAGE plpgsql""")
        op.execute("CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
                   "FOR EACH ROW EXECUTE FUNCTION neunn_audit_append_only()")
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_no_{event.lower()} BEFORE {event} ON audit "
                       f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_append_only ON audit")
        op.execute("DROP FUNCTION neunn_audit_append_only()")
    else:
        op.execute("DROP TRIGGER audit_no_update")
        op.execute("DROP TRIGGER audit_no_delete")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("n_amendments")
