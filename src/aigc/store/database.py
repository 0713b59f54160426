"""Open the app database from a URL: SQLite by default (a file, WAL, durable), PostgreSQL by URL.

SQLite gets, on every connection: `journal_mode=WAL` (readers never block the writer),
`synchronous=FULL` (a committed message survives a crash of the process or the machine),
`foreign_keys=ON` (deleting a conversation deletes its messages), a busy timeout and the
sqlite-vec extension (knowledge-base vectors), through the pysqlite3 driver where it is installed. The schema
is made and upgraded at open by the migrations (migrate.py); on SQLite a full-text index over
messages is added too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from aigc.store.migrate import upgrade
from aigc.store.search import install_fulltext


def sqlite_module():
    """The SQLite driver: pysqlite3 (a current SQLite that can load extensions, as sqlite-vec
    needs; Python's own `sqlite3` is often built without extension loading), else `sqlite3`."""
    try:
        import pysqlite3.dbapi2 as module  # type: ignore[import-not-found]
    except ImportError:
        import sqlite3 as module
    return module


def load_sqlite_vec(connection) -> bool:
    """Load the sqlite-vec extension into a DB-API connection; False where it cannot be."""
    if not hasattr(connection, "enable_load_extension"):
        return False
    try:
        import sqlite_vec

        connection.enable_load_extension(True)
        sqlite_vec.load(connection)
        connection.enable_load_extension(False)
        return True
    except Exception:  # no extension support, or no sqlite_vec package: exact search instead
        return False


class Database:
    """An engine plus a session factory. `session()` is a unit of work: commit on success."""

    def __init__(self, url: str, *, fulltext: bool = True):
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = self._make_engine()
        upgrade(self.engine, self.url.render_as_string(hide_password=True))
        # Full-text search: FTS5 on SQLite (unless turned off, as tests do to cover the fallback).
        self.fulltext = fulltext and self.is_sqlite and install_fulltext(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _make_engine(self) -> Engine:
        if not self.is_sqlite:
            return create_engine(self.url, pool_pre_ping=True)
        database = self.url.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        module = sqlite_module()
        if in_memory:  # one shared connection, or every session would see its own empty database
            engine = create_engine(self.url, connect_args={"check_same_thread": False}, poolclass=StaticPool,
                                   module=module)
        else:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30},
                                   module=module)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            load_sqlite_vec(dbapi_connection)
            cursor = dbapi_connection.cursor()
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
