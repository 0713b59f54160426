"""Databases for the tests: SQLite always, PostgreSQL too when AIGC_TEST_DATABASE_URL names a
server (`.ci/run` starts one with .ci/postgres.sh)."""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest

# A PostgreSQL server for the store, app and accounts tests (`.ci/run` starts one with
# .ci/postgres.sh); without it those tests run on SQLite only and say why the rest skipped.
POSTGRES_URL = os.environ.get("AIGC_TEST_DATABASE_URL")


@contextlib.contextmanager
def fresh_database(kind: str, folder):
    """A fresh, empty database URL: a SQLite file in `folder`, or (when AIGC_TEST_DATABASE_URL is
    set) a new PostgreSQL database, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder}/test.db"
        return
    if not POSTGRES_URL:
        pytest.skip("AIGC_TEST_DATABASE_URL is not set (.ci/run starts PostgreSQL with .ci/postgres.sh)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"aigc_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))  # ends open connections
        admin.dispose()
