"""Schema migrations (Alembic) run when a database opens: a new database gets every revision, an
older one the revisions it lacks, and the log says which. Databases made before migrations
existed (tables from `create_all`, no `alembic_version`) are recognised and stamped as the first
revision, so they upgrade like any other.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

log = logging.getLogger("aigc.store")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the schema `create_all` made before migrations
# Alembic's `op` and `context` are process-wide proxies: two threads migrating at once (two apps
# opening their databases, as tests and an app with a separate gate database do) would run one
# database's statements on the other's connection ("no such table"). One migration at a time.
_MIGRATING = threading.Lock()


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head() or BASELINE


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, url: str = "") -> None:
    """Bring the database to the newest schema (idempotent)."""
    with _MIGRATING, engine.begin() as connection:
        config = _config(connection)
        before = current_revision(connection)
        if before is None and inspect(connection).has_table("conversations"):
            command.stamp(config, BASELINE)
            before = BASELINE
        head = head_revision()
        if before == head:
            return
        command.upgrade(config, "head")
    if before is not None:
        log.warning("database %s upgraded from schema %s to %s", url or engine.url.render_as_string(), before, head)
