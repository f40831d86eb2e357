"""Alembic's entry point for the case store: run the migrations on the connection that neunn.cases.database passes."""

from alembic import context

from neunn.cases.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
