"""Alembic's environment for aigc: run by `aigc.store.migrate.upgrade` on an open connection
(never from an alembic.ini: the app's own database URL and engine settings apply)."""

from __future__ import annotations

from alembic import context

from aigc.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
