"""Conversations and their messages: create, list, search, rename, delete, append, truncate, rate.

Everything leaves as plain dicts (JSON-ready) so callers never hold a database session. Edits
truncate: editing message k keeps messages 0..k (k with its new text) and deletes the rest; the
reply is then generated again (see replies.py). Positions therefore stay 0..n-1.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aigc.store import Conversation, Database, Feedback, Message
from aigc.store.models import utcnow
from aigc.store.search import search_conversation_ids_by_title, search_message_ids, snippet

TITLE_CHARS = 60  # an untitled conversation is named after its first message, cut here


class NotFoundError(LookupError):
    """An id that does not exist (the API answers 404)."""

    def __init__(self, kind: str, ident: Any):
        super().__init__(f"{kind} {ident} does not exist")
        self.kind = kind


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # SQLite hands datetimes back without their zone; we stored UTC
        dt = dt.replace(tzinfo=UTC)
    return dt.isoformat().replace("+00:00", "Z")


def message_dict(m: Message, feedback: Feedback | None = None) -> dict[str, Any]:
    fb = feedback if feedback is not None else m.feedback
    return {
        "id": m.id, "conversation_id": m.conversation_id, "position": m.position, "parent_id": m.parent_id,
        "role": m.role, "content": m.content, "reasoning": m.reasoning, "model": m.model, "tokens": m.tokens,
        "prompt_tokens": m.prompt_tokens, "completion_tokens": m.completion_tokens,
        "finish_reason": m.finish_reason, "created_at": iso(m.created_at),
        "feedback": {"rating": fb.rating, "comment": fb.comment} if fb is not None else None,
        "sources": m.sources, "author": m.author,
    }


_MESSAGE_COLUMNS = (Message.id, Message.conversation_id, Message.position, Message.parent_id, Message.role,
                    Message.content, Message.reasoning, Message.model, Message.tokens, Message.prompt_tokens,
                    Message.completion_tokens,
                    Message.finish_reason, Message.created_at, Message.sources, Message.author)


def _row_dict(r: Any) -> dict[str, Any]:
    out = {c.key: getattr(r, c.key) for c in _MESSAGE_COLUMNS}
    out["created_at"] = iso(out["created_at"])
    out["feedback"] = {"rating": r.rating, "comment": r.comment} if r.rating is not None else None
    return out


def conversation_dict(c: Conversation, *, count: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id, "title": c.title, "system_prompt": c.system_prompt, "model": c.model,
        "params": dict(c.params or {}), "knowledge_base_ids": list(c.knowledge_base_ids or []),
        "created_at": iso(c.created_at), "updated_at": iso(c.updated_at),
    }
    if c.site_id is not None:  # a support site's visitor conversation (apps/support)
        out |= {"site_id": c.site_id, "handoff": c.handoff, "handoff_reason": c.handoff_reason,
                "handoff_at": iso(c.handoff_at), "agent_id": c.agent_id}
    if count is not None:
        out["message_count"] = count
    return out


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


class ConversationStore:
    """One owner's conversations (`owner`: a user id; None is the single room of a server without
    accounts). Another owner's conversation, or a message or rating in it, is "not found", the
    same as one that never existed: nothing confirms it exists."""

    def __init__(self, db: Database, owner: int | None = None):
        self.db = db
        self.owner = owner

    def scoped(self, owner: int | None) -> ConversationStore:
        return ConversationStore(self.db, owner)

    def _mine(self) -> Any:
        return Conversation.user_id.is_(None) if self.owner is None else Conversation.user_id == self.owner

    def _own_chats(self) -> Any:
        """The owner's own chats: support visitors' conversations are listed in the staff queue."""
        return self._mine() & Conversation.site_id.is_(None)

    # ---------------------------------------------------------------- conversations

    def _get(self, s: Session, conversation_id: int) -> Conversation:
        c = s.get(Conversation, conversation_id)
        if c is None or c.user_id != self.owner:
            raise NotFoundError("conversation", conversation_id)
        return c

    def _message(self, s: Session, message_id: int) -> Message:
        m = s.get(Message, message_id)
        if m is None or s.scalar(select(Conversation.user_id).where(Conversation.id == m.conversation_id)) != self.owner:
            raise NotFoundError("message", message_id)
        return m

    def create(self, *, title: str = "", system_prompt: str = "", model: str | None = None,
               params: dict[str, Any] | None = None, knowledge_base_ids: list[int] | None = None) -> dict[str, Any]:
        with self.db.session() as s:
            c = Conversation(title=title, system_prompt=system_prompt, model=model, params=params or {},
                             user_id=self.owner, knowledge_base_ids=knowledge_base_ids or None)
            s.add(c)
            s.flush()
            return conversation_dict(c, count=0)

    def list(self, limit: int = 500) -> list[dict[str, Any]]:
        """Newest first, with message counts (one query)."""
        with self.db.session() as s:
            counts = (select(Message.conversation_id, func.count(Message.id).label("n"))
                      .group_by(Message.conversation_id).subquery())
            rows = s.execute(select(Conversation, func.coalesce(counts.c.n, 0))
                             .outerjoin(counts, counts.c.conversation_id == Conversation.id)
                             .where(self._own_chats())
                             .order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit))
            return [conversation_dict(c, count=n) for c, n in rows]

    def get(self, conversation_id: int) -> dict[str, Any]:
        """The conversation with its messages (and their feedback), in order."""
        with self.db.session() as s:
            out = conversation_dict(self._get(s, conversation_id))
            # Plain rows, not ORM objects: a 1,000-message conversation loads several times faster.
            rows = s.execute(select(*_MESSAGE_COLUMNS, Feedback.rating, Feedback.comment)
                             .outerjoin(Feedback, Feedback.message_id == Message.id)
                             .where(Message.conversation_id == conversation_id).order_by(Message.position))
            out["messages"] = [_row_dict(r) for r in rows]
            out["message_count"] = len(out["messages"])
            return out

    def get_meta(self, conversation_id: int) -> dict[str, Any]:
        """The conversation without its messages."""
        with self.db.session() as s:
            return conversation_dict(self._get(s, conversation_id))

    def update(self, conversation_id: int, **fields: Any) -> dict[str, Any]:
        """Set any of title, system_prompt, model, params, knowledge_base_ids (None leaves a field as it is)."""
        with self.db.session() as s:
            c = self._get(s, conversation_id)
            for name in ("title", "system_prompt", "model", "params"):
                if fields.get(name) is not None:
                    setattr(c, name, dict(fields[name]) if name == "params" else fields[name])
            if fields.get("knowledge_base_ids") is not None:
                c.knowledge_base_ids = list(fields["knowledge_base_ids"]) or None
            c.updated_at = utcnow()
            s.flush()
            n = s.scalar(select(func.count(Message.id)).where(Message.conversation_id == c.id))
            return conversation_dict(c, count=n)

    def delete(self, conversation_id: int) -> None:
        with self.db.session() as s:
            s.delete(self._get(s, conversation_id))

    def search(self, query: str, limit: int = 100) -> list[dict[str, Any]]:
        """Conversations whose title or messages contain `query`, each with the best snippet."""
        with self.db.session() as s:
            hits: dict[int, dict[str, Any]] = {}
            ids = search_message_ids(s, query, fulltext=self.db.fulltext)
            for m in s.scalars(select(Message).where(Message.id.in_(ids))) if ids else []:
                hit = hits.get(m.conversation_id)
                if hit is None or m.id > hit["message_id"]:
                    hits[m.conversation_id] = {"message_id": m.id, "snippet": snippet(m.content, query)}
            for cid in search_conversation_ids_by_title(s, query):
                hits.setdefault(cid, {"message_id": None, "snippet": ""})
            if not hits:
                return []
            convs = s.scalars(select(Conversation).where(Conversation.id.in_(hits), self._own_chats())
                              .order_by(Conversation.updated_at.desc()).limit(limit))
            return [{**conversation_dict(c), "match": hits[c.id]} for c in convs]

    # ---------------------------------------------------------------- messages

    def history(self, conversation_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The conversation and its messages (for building a prompt)."""
        data = self.get(conversation_id)
        return data, data.pop("messages")

    def add_message(self, conversation_id: int, role: str, content: str, **fields: Any) -> dict[str, Any]:
        """Append a message (model, reasoning, tokens, prompt_tokens, completion_tokens, finish_reason)."""
        with self.db.session() as s:
            c = self._get(s, conversation_id)
            last = s.execute(select(Message.id, Message.position).where(Message.conversation_id == c.id)
                             .order_by(Message.position.desc()).limit(1)).first()
            m = Message(conversation_id=c.id, role=role, content=content,
                        position=0 if last is None else last.position + 1,
                        parent_id=None if last is None else last.id, **fields)
            s.add(m)
            if role == "user" and not c.title:
                c.title = title_from(content)
            c.updated_at = utcnow()
            s.flush()
            return message_dict(m, feedback=None)

    def get_message(self, conversation_id: int, message_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            self._get(s, conversation_id)
            m = s.get(Message, message_id)
            if m is None or m.conversation_id != conversation_id:
                raise NotFoundError("message", message_id)
            return message_dict(m)

    def truncate_after(self, conversation_id: int, position: int) -> int:
        """Delete every message after `position`; returns how many went."""
        with self.db.session() as s:
            c = self._get(s, conversation_id)
            result = s.execute(delete(Message).where(Message.conversation_id == c.id, Message.position > position))
            c.updated_at = utcnow()
            return result.rowcount or 0

    def set_content(self, conversation_id: int, message_id: int, content: str, tokens: int | None) -> dict[str, Any]:
        with self.db.session() as s:
            self._get(s, conversation_id)
            m = s.get(Message, message_id)
            if m is None or m.conversation_id != conversation_id:
                raise NotFoundError("message", message_id)
            m.content, m.tokens = content, tokens
            s.flush()
            return message_dict(m)

    # ---------------------------------------------------------------- feedback

    def set_feedback(self, message_id: int, rating: int, comment: str = "") -> dict[str, Any]:
        """Store 👍 (+1) or 👎 (-1) with an optional comment; replaces an earlier rating."""
        with self.db.session() as s:
            self._message(s, message_id)
            fb = s.scalar(select(Feedback).where(Feedback.message_id == message_id))
            if fb is None:
                try:
                    with s.begin_nested():  # two first ratings at once: the later one updates
                        fb = Feedback(message_id=message_id, rating=rating, comment=comment)
                        s.add(fb)
                except IntegrityError:
                    self._message(s, message_id)  # or the message went with its conversation: 404
                    fb = s.scalar(select(Feedback).where(Feedback.message_id == message_id))
                    if fb is None:
                        raise NotFoundError("message", message_id) from None
            if fb.rating != rating or fb.comment != comment:
                fb.rating, fb.comment, fb.updated_at = rating, comment, utcnow()
            s.flush()
            return {"message_id": message_id, "rating": fb.rating, "comment": fb.comment,
                    "updated_at": iso(fb.updated_at)}

    def clear_feedback(self, message_id: int) -> None:
        with self.db.session() as s:
            self._message(s, message_id)
            s.execute(delete(Feedback).where(Feedback.message_id == message_id))

    def list_feedback(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Rated messages with the model and text they rate, newest first (for monitoring/training)."""
        with self.db.session() as s:
            rows = s.execute(select(Feedback, Message).join(Message, Feedback.message_id == Message.id)
                             .join(Conversation, Conversation.id == Message.conversation_id).where(self._mine())
                             .order_by(Feedback.updated_at.desc()).limit(limit))
            return [{"message_id": m.id, "conversation_id": m.conversation_id, "rating": fb.rating,
                     "comment": fb.comment, "model": m.model, "role": m.role, "content": m.content,
                     "updated_at": iso(fb.updated_at)} for fb, m in rows]
