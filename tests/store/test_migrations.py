"""Schema migrations: a new database gets the models' schema exactly; a database made before
migrations (by `create_all` of the old models) is stamped, upgraded, and keeps every row."""

from __future__ import annotations

import logging
import sqlite3

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select

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


def _schema_diff(db: Database) -> list:
    """Differences between the database and the models, but SQLite's FTS5 tables (search.py), the
    vector tables (knowledge/vectors.py: outside the ORM, in each database's own extension) and
    the owner columns' foreign keys, whose ON DELETE SQLAlchemy does not read back from a column
    SQLite added (checked with PRAGMA foreign_key_list below)."""
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    return [d for d in diff if not (d[0] == "remove_table" and d[1].name.startswith(("messages_fts", "kb_vectors")))
            and not (d[0] in ("add_fk", "remove_fk") and [c.name for c in d[1].columns] == ["user_id"])]


def _owner_fks(db: Database) -> dict[str, tuple]:
    with db.engine.connect() as conn:
        return {t: tuple(r[2:7] for r in conn.exec_driver_sql(f"PRAGMA foreign_key_list({t})"))
                for t in ("conversations", "templates", "responses")}


def test_a_new_database_has_exactly_the_models_schema(database_url):
    db = Database(database_url)
    assert _schema_diff(db) == []
    if db.is_sqlite:
        assert set(_owner_fks(db).values()) == {(("users", "user_id", "id", "NO ACTION", "CASCADE"),)}
    else:
        fks = inspect(db.engine).get_foreign_keys("conversations")
        assert [(f["referred_table"], f["options"].get("ondelete")) for f in fks] == [("users", "CASCADE")]
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
    assert fks == {"users"}
    assert set(_owner_fks(db).values()) == {(("users", "user_id", "id", "NO ACTION", "CASCADE"),)}
    with db.session() as s:  # deleting a conversation still cascades into its messages
        s.delete(s.get(Conversation, 1))
    with db.session() as s:
        assert s.execute(select(Message)).first() is None
