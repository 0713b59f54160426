"""The app database: SQLite pragmas (WAL, durable, foreign keys), normalized tables, full-text search
(FTS5 trigram and the portable LIKE fallback), and that a crash loses no committed message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text

from aigc.store import Conversation, Database, Feedback, Message
from aigc.store.search import search_message_ids, snippet

SRC = str(Path(__file__).resolve().parents[2] / "src")


def conversation(db: Database, *texts: str) -> int:
    with db.session() as s:
        c = Conversation(title="t")
        c.messages = [Message(position=i, role="user" if i % 2 == 0 else "assistant", content=t)
                      for i, t in enumerate(texts)]
        s.add(c)
        s.flush()
        return c.id


def test_pragmas_and_tables(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/sub/dir/app.db")  # parent folders are made
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    tables = set(inspect(db.engine).get_table_names())
    assert {"conversations", "messages", "feedback", "templates", "messages_fts"} <= tables
    columns = {c["name"] for c in inspect(db.engine).get_columns("messages")}
    assert {"conversation_id", "role", "content", "model", "tokens", "position", "parent_id", "finish_reason"} <= columns
    Database(f"sqlite:///{tmp_path}/sub/dir/app.db")  # opening again is harmless (create_all is idempotent)


def test_deleting_a_conversation_deletes_its_messages_and_feedback(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/a.db")
    cid = conversation(db, "hello", "hi there")
    with db.session() as s:
        s.add(Feedback(message_id=s.scalar(select(Message.id).limit(1)), rating=1))
    with db.session() as s:
        s.delete(s.get(Conversation, cid))
    with db.session() as s:
        assert s.scalar(select(func.count(Message.id))) == 0
        assert s.scalar(select(func.count(Feedback.id))) == 0
        assert search_message_ids(s, "hello", fulltext=True) == []  # the index follows deletes


def test_ids_are_not_reused_after_delete(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/a.db")
    first = conversation(db, "x")
    with db.session() as s:
        s.delete(s.get(Conversation, first))
    assert conversation(db, "y") > first


@pytest.mark.parametrize("fulltext", [True, False])
def test_search(tmp_path, fulltext):
    db = Database(f"sqlite:///{tmp_path}/s.db", fulltext=fulltext)
    assert db.fulltext is fulltext
    conversation(db, "我想去杭州看西湖", "The West Lake in HANGZHOU is lovely", "100% sure_thing")
    with db.session() as s:
        found = {q: len(search_message_ids(s, q, fulltext=db.fulltext))
                 for q in ("西湖", "杭州看", "hangzhou", "west lake", "湖", "100%", "sure_thing", "%", "_", "zzz")}
        assert found == {"西湖": 1, "杭州看": 1, "hangzhou": 1, "west lake": 1, "湖": 1, "100%": 1, "sure_thing": 1,
                         "%": 1, "_": 1, "zzz": 0}
        for query in ('"', 'a" OR "b', "NEAR(", "*", "   "):
            search_message_ids(s, query, fulltext=db.fulltext)  # never a syntax error


def test_update_reindexes(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/u.db")
    conversation(db, "old words here")
    with db.session() as s:
        s.scalar(select(Message)).content = "brand new text"
    with db.session() as s:
        assert search_message_ids(s, "old words", fulltext=True) == []
        assert len(search_message_ids(s, "brand new", fulltext=True)) == 1


def test_index_is_built_for_an_existing_database(tmp_path):
    url = f"sqlite:///{tmp_path}/late.db"
    conversation(Database(url, fulltext=False), "written before the index existed")
    db = Database(url)
    with db.session() as s:
        assert len(search_message_ids(s, "before the index", fulltext=db.fulltext)) == 1


def test_in_memory_database_is_shared_across_sessions():
    db = Database("sqlite://")
    conversation(db, "in memory")
    with db.session() as s:
        assert s.scalar(select(func.count(Message.id))) == 1


def test_snippet():
    long = "a" * 200 + "needle" + "b" * 200
    out = snippet(long, "NEEDLE", width=10)
    assert out == "…" + "a" * 10 + "needle" + "b" * 10 + "…"
    assert snippet("short", "x") == "short"


def test_a_crash_loses_no_committed_message(tmp_path):
    """A process that commits and is then killed (no clean shutdown, WAL not checkpointed)."""
    url = f"sqlite:///{tmp_path}/crash.db"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {SRC!r})
        from aigc.store import Conversation, Database, Message
        db = Database({url!r})
        for i in range(20):
            with db.session() as s:
                c = Conversation(title=f"c{{i}}")
                c.messages = [Message(position=0, role="user", content=f"committed {{i}}")]
                s.add(c)
        session = db._sessions()
        session.add(Conversation(title="never committed"))
        session.flush()
        print("ready", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and "ready" in proc.stdout, proc.stderr
    assert os.path.exists(f"{tmp_path}/crash.db-wal")  # the commits were in the log, not yet checkpointed
    db = Database(url)
    with db.session() as s:
        titles = list(s.scalars(select(Conversation.title)))
        assert titles == [f"c{i}" for i in range(20)]
        assert s.scalar(select(func.count(Message.id))) == 20
