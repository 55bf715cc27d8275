"""Alembic environment: runs on the connection promptd hands over (see promptd.store.db.migrate)."""

from __future__ import annotations

from alembic import context

from promptd.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `promptd migrate` (it passes the database connection)")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
