"""Full-text search over messages: SQLite FTS5 where available, a portable ILIKE scan elsewhere.

The FTS5 table uses the trigram tokenizer: it matches any substring of 3+ characters, which is
what a chat search needs in Chinese (no spaces between words) as much as in English. It is an
external-content table over `messages` kept current by triggers, so the ORM writes messages as
usual. Queries shorter than 3 characters (and other databases) use `ILIKE '%q%'`.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from aigc.store.models import Conversation, Message

log = logging.getLogger("aigc.store")

_FTS_DDL = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5("
    "content, content='messages', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_update AFTER UPDATE OF content ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
]


def install_fulltext(engine: Engine) -> bool:
    """Create the FTS5 index and its triggers (idempotent). False if this SQLite lacks FTS5/trigram."""
    try:
        with engine.begin() as conn:
            existed = conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'")).first()
            for ddl in _FTS_DDL:
                conn.execute(text(ddl))
            if not existed:  # a database from before the index: index what is there
                conn.execute(text("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')"))
    except OperationalError as e:
        log.warning("SQLite full-text search unavailable (%s); search falls back to LIKE", e)
        return False
    return True


def _fts_phrase(query: str) -> str:
    """The query as one FTS5 phrase: no operators, so user input cannot be a syntax error."""
    return '"' + query.replace('"', '""') + '"'


def search_message_ids(session: Session, query: str, *, fulltext: bool, limit: int = 200) -> list[int]:
    """Ids of messages containing `query` (case-insensitive), newest first."""
    query = query.strip()
    if not query:
        return []
    if fulltext and len(query) >= 3:
        rows = session.execute(
            text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH :q ORDER BY rowid DESC LIMIT :n"),
            {"q": _fts_phrase(query), "n": limit})
        return [r[0] for r in rows]
    stmt = (select(Message.id).where(Message.content.icontains(query, autoescape=True))
            .order_by(Message.id.desc()).limit(limit))
    return list(session.scalars(stmt))


def search_conversation_ids_by_title(session: Session, query: str, limit: int = 200) -> list[int]:
    query = query.strip()
    if not query:
        return []
    stmt = (select(Conversation.id).where(Conversation.title.icontains(query, autoescape=True))
            .order_by(Conversation.updated_at.desc()).limit(limit))
    return list(session.scalars(stmt))


def snippet(content: str, query: str, width: int = 60) -> str:
    """A window of `content` around the first match of `query` (for the search results list)."""
    at = content.lower().find(query.strip().lower())
    if at < 0:
        return content[: 2 * width]
    start = max(0, at - width)
    end = min(len(content), at + len(query) + width)
    return ("…" if start else "") + content[start:end] + ("…" if end < len(content) else "")
