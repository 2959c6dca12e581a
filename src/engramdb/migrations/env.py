"""Alembic environment: runs engramdb's migrations on the connection the runner hands over."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when alembic is driven by hand
    raise RuntimeError("run engramdb migrations with `engramdb db upgrade`, not bare alembic")

context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
