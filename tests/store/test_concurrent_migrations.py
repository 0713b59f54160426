"""Databases opened by several threads at once (several apps in one process, an app and its access
gate) all reach the newest schema: Alembic's `op`/`context` are process-wide, so migrations must not
interleave."""

from __future__ import annotations

import threading

from sqlalchemy import inspect

from aigc.store.database import Database
from aigc.store.migrate import current_revision, head_revision


def test_threads_opening_different_databases_at_once_all_migrate(tmp_path):
    n = 6
    start = threading.Barrier(n)
    errors: list[BaseException] = []
    opened: list[Database] = []

    def open_one(i: int) -> None:
        start.wait()
        try:
            opened.append(Database(f"sqlite:///{tmp_path}/db{i}.sqlite"))
        except BaseException as e:  # noqa: BLE001 - collected and reported below
            errors.append(e)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
    assert len(opened) == n
    for db in opened:
        with db.engine.connect() as connection:
            assert current_revision(connection) == head_revision()
            assert inspect(connection).has_table("knowledge_bases")
