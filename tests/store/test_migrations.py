"""Schema migrations: a new database gets the models' schema exactly; a database made before
migrations (by `create_all` of the old models) is stamped, upgraded, and keeps every row."""

from __future__ import annotations

import logging
import sqlite3

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, inspect, select

from aigc.store import Conversation, Database, Message
from aigc.store.migrate import current_revision, head_revision
from aigc.store.models import Base

# What a database made by aigc before accounts held (the old create_all, as SQLite wrote it).
LEGACY_DDL = """
CREATE TABLE conversations (id INTEGER NOT NULL, title VARCHAR(200) NOT NULL, system_prompt TEXT NOT NULL,
  model VARCHAR(200), params JSON NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL,
  PRIMARY KEY (id));
CREATE INDEX ix_conversations_updated_at ON conversations (updated_at);
CREATE TABLE templates (id INTEGER NOT NULL, version INTEGER NOT NULL, spec JSON NOT NULL, body TEXT NOT NULL,
  created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, PRIMARY KEY (id));
CREATE TABLE responses (id VARCHAR(64) NOT NULL, model VARCHAR(200) NOT NULL, body JSON NOT NULL,
  conversation JSON NOT NULL, created_at DATETIME NOT NULL, expires_at DATETIME NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_responses_expires_at ON responses (expires_at);
CREATE TABLE messages (id INTEGER NOT NULL, conversation_id INTEGER NOT NULL, position INTEGER NOT NULL,
  parent_id INTEGER, role VARCHAR(16) NOT NULL, content TEXT NOT NULL, model VARCHAR(200), tokens INTEGER,
  prompt_tokens INTEGER, completion_tokens INTEGER, finish_reason VARCHAR(16), created_at DATETIME NOT NULL,
  PRIMARY KEY (id), UNIQUE (conversation_id, position),
  FOREIGN KEY(conversation_id) REFERENCES conversations (id) ON DELETE CASCADE,
  FOREIGN KEY(parent_id) REFERENCES messages (id) ON DELETE SET NULL);
CREATE TABLE feedback (id INTEGER NOT NULL, message_id INTEGER NOT NULL, rating INTEGER NOT NULL,
  comment TEXT NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, PRIMARY KEY (id),
  UNIQUE (message_id), FOREIGN KEY(message_id) REFERENCES messages (id) ON DELETE CASCADE);
INSERT INTO conversations VALUES (1, '退货', '', NULL, '{}', '2026-11-01 10:00:00', '2026-11-01 10:00:00');
INSERT INTO messages VALUES (1, 1, 0, NULL, 'user', '退货政策是什么？', NULL, 5, NULL, NULL, NULL,
  '2026-11-01 10:00:00');
INSERT INTO messages VALUES (2, 1, 1, 1, 'assistant', 'Within 7 days.', 'm', 4, 9, 4, 'stop',
  '2026-11-01 10:00:01');
"""


_ADDED_FK_COLUMNS = (["user_id"], ["active_root_id"], ["active_child_id"])  # foreign keys SQLite added with their column


def _schema_diff(db: Database) -> list:
    """Differences between the database and the models, but SQLite's FTS5 tables (search.py), the
    vector tables (knowledge/vectors.py: outside the ORM, in each database's own extension) and
    the foreign keys of columns SQLite added (owners, the active leaf), whose name and ON DELETE
    SQLAlchemy does not read back (checked with PRAGMA foreign_key_list below)."""
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    return [d for d in diff if not (d[0] == "remove_table" and d[1].name.startswith(("messages_fts", "kb_vectors")))
            and not (d[0] in ("add_fk", "remove_fk") and [c.name for c in d[1].columns] in _ADDED_FK_COLUMNS)]


def _owner_fks(db: Database) -> dict[str, tuple]:
    with db.engine.connect() as conn:
        return {t: tuple(r[2:7] for r in conn.exec_driver_sql(f"PRAGMA foreign_key_list({t})") if r[3] == "user_id")
                for t in ("conversations", "templates", "responses")}


def _active_path_fks(db: Database) -> set[tuple]:
    """The active path's pointers' foreign keys: (table, column, referred table, ON DELETE)."""
    pointers = {"conversations": "active_root_id", "messages": "active_child_id"}
    if db.is_sqlite:
        with db.engine.connect() as conn:
            return {(t, r[3], r[2], r[6]) for t, column in pointers.items()
                    for r in conn.exec_driver_sql(f"PRAGMA foreign_key_list({t})") if r[3] == column}
    return {(t, column, f["referred_table"], f["options"].get("ondelete")) for t, column in pointers.items()
            for f in inspect(db.engine).get_foreign_keys(t) if f["constrained_columns"] == [column]}


def test_a_new_database_has_exactly_the_models_schema(database_url):
    db = Database(database_url)
    assert _schema_diff(db) == []
    if db.is_sqlite:
        assert set(_owner_fks(db).values()) == {(("users", "user_id", "id", "NO ACTION", "CASCADE"),)}
    else:
        fks = inspect(db.engine).get_foreign_keys("conversations")
        assert sorted((f["referred_table"], f["options"].get("ondelete")) for f in fks) == [
            ("messages", "SET NULL"), ("users", "CASCADE")]
    assert _active_path_fks(db) == {("conversations", "active_root_id", "messages", "SET NULL"),
                                    ("messages", "active_child_id", "messages", "SET NULL")}
    with db.engine.connect() as conn:
        assert current_revision(conn) == head_revision()
    Database(database_url)  # opening again changes nothing


def test_a_database_from_before_migrations_upgrades_and_keeps_its_rows(tmp_path, caplog):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(LEGACY_DDL)
    with caplog.at_level(logging.WARNING, logger="aigc.store"):
        db = Database(f"sqlite:///{path}")
    assert any("upgraded from schema 0001" in r.getMessage() for r in caplog.records)  # it says so
    assert _schema_diff(db) == []
    with db.session() as s:
        conv = s.execute(select(Conversation)).scalar_one()
        assert conv.title == "退货" and conv.user_id is None
        assert [m.content for m in s.execute(select(Message).order_by(Message.position)).scalars()] == [
            "退货政策是什么？", "Within 7 days."]
    assert db.fulltext  # the search index was built over the old messages
    from aigc.store.search import search_message_ids

    with db.session() as s:
        assert search_message_ids(s, "退货政策", fulltext=True, limit=10)


def test_upgrade_keeps_foreign_keys_working(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(LEGACY_DDL)
    db = Database(f"sqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}")
    fks = {fk["referred_table"] for fk in inspect(engine).get_foreign_keys("conversations")}
    assert fks == {"users", "messages"}
    assert set(_owner_fks(db).values()) == {(("users", "user_id", "id", "NO ACTION", "CASCADE"),)}
    with db.session() as s:  # deleting a conversation still cascades into its messages
        s.delete(s.get(Conversation, 1))
    with db.session() as s:
        assert s.execute(select(Message)).first() is None


def test_a_database_at_0006_gets_message_trees_and_the_app_reads_it(database_url, caplog):
    """0007: every existing conversation becomes one linear branch (each message follows the
    previous one of its conversation by id), its last message the active leaf."""
    from alembic import command
    from fastapi.testclient import TestClient
    from sqlalchemy import text

    from aigc.server.app import create_app
    from aigc.settings import Settings
    from aigc.store.database import load_sqlite_vec, sqlite_module
    from aigc.store.migrate import _config

    engine = create_engine(database_url, **({"module": sqlite_module()} if database_url.startswith("sqlite") else {}))
    if database_url.startswith("sqlite"):  # as the app opens it: with sqlite-vec, for 0003's vector table
        event.listen(engine, "connect", lambda dbapi, _record: load_sqlite_vec(dbapi))
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0006")
        conv = ("INSERT INTO conversations (title, system_prompt, params, created_at, updated_at) "
                "VALUES (:t, '', '{}', '2026-11-01 10:00:00', '2026-11-01 10:00:00')")
        msg = ("INSERT INTO messages (conversation_id, position, role, content, created_at) "
               "VALUES (:c, :p, :r, :t, '2026-11-01 10:00:00')")
        for title in ("退货", "other", "empty"):
            conn.execute(text(conv), {"t": title})
        a, b, empty = [r[0] for r in conn.execute(text("SELECT id FROM conversations ORDER BY id"))]
        # Interleaved ids: each conversation's chain is its own.
        for c, p, r, t in [(a, 0, "user", "退货政策是什么？"), (a, 1, "assistant", "Within 7 days."),
                           (b, 0, "user", "hi"), (a, 2, "user", "运费呢？")]:
            conn.execute(text(msg), {"c": c, "p": p, "r": r, "t": t})
    engine.dispose()

    # The app upgrades an existing database when it starts, says so, and shows each chain as one branch.
    app = create_app(Settings(models=[], database_url=database_url))
    with caplog.at_level(logging.WARNING, logger="aigc.store"), TestClient(app, base_url="http://127.0.0.1") as client:
        assert any("upgraded from schema 0006" in r.getMessage() for r in caplog.records)
        shown = client.get(f"/api/conversations/{a}").json()
        assert [(m["content"], len(m["siblings"])) for m in shown["messages"]] == [
            ("退货政策是什么？", 1), ("Within 7 days.", 1), ("运费呢？", 1)]
        assert client.get(f"/api/conversations/{empty}").json()["messages"] == []
        exported = client.get(f"/api/conversations/{a}/export").json()
        assert [m["parent"] for m in exported["messages"]] == [None, 0, 1]
        assert [m["active_child"] for m in exported["messages"]] == [1, 2, None] and exported["active_root"] == 0

    db = Database(database_url)
    assert _schema_diff(db) == []
    with db.session() as s:
        rows = s.execute(select(Message.id, Message.conversation_id, Message.parent_id, Message.active_child_id)
                         .order_by(Message.id)).all()
        m1, m2, m3, m4 = (r.id for r in rows)
        assert [(r.conversation_id, r.parent_id, r.active_child_id) for r in rows] == [
            (a, None, m2), (a, m1, m4), (b, None, None), (a, m2, None)]
        assert [s.get(Conversation, c).active_root_id for c in (a, b, empty)] == [m1, m3, None]
