"""Conversations and their messages: create, list, search, rename, delete, append, branch, fork, rate.

Everything leaves as plain dicts (JSON-ready) so callers never hold a database session.

Messages form a tree: each names the message it follows (`parent_id`; None for a first message),
and an edit or a regenerated reply is a new sibling, so nothing is ever deleted but with its
conversation. The branch on screen, the active path, starts at the conversation's
`active_root_id` and follows each message's `active_child_id` (the newest child where one is
unset); that path is what the app shows and what the model is sent. Every pointer stays when
another branch is shown, so a branch comes back as it was left. Positions number a
conversation's messages in the order they were made (0..n-1 over every branch): a parent
always comes before its children.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aigc.store import Conversation, Database, Feedback, Message
from aigc.store.models import utcnow
from aigc.store.search import search_conversation_ids_by_title, search_message_ids, snippet

TITLE_CHARS = 60  # an untitled conversation is named after its first message, cut here
TITLE_MAX = 200  # the column's length (and the API's limit on a title)
_FORK_SUFFIX = re.compile(r" ?\(fork(?: \d+)?\)$")  # "Trip (fork)", "Trip (fork 2)"


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


_MESSAGE_COLUMNS = (Message.id, Message.conversation_id, Message.position, Message.parent_id,
                    Message.active_child_id, Message.role,
                    Message.content, Message.reasoning, Message.model, Message.tokens, Message.prompt_tokens,
                    Message.completion_tokens,
                    Message.finish_reason, Message.created_at, Message.sources, Message.author)


# What a fork copies of a message (its id, place and rating are the copy's own).
_COPIED_FIELDS = ("role", "content", "reasoning", "model", "tokens", "prompt_tokens", "completion_tokens",
                  "finish_reason", "sources", "author")


def _row_dict(r: Any) -> dict[str, Any]:
    out = {c.key: getattr(r, c.key) for c in _MESSAGE_COLUMNS}
    out["created_at"] = iso(out["created_at"])
    out["feedback"] = {"rating": r.rating, "comment": r.comment} if r.rating is not None else None
    return out


def conversation_dict(c: Conversation, *, count: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id, "title": c.title, "system_prompt": c.system_prompt, "model": c.model,
        "params": dict(c.params or {}), "knowledge_base_ids": list(c.knowledge_base_ids or []),
        "active_root_id": c.active_root_id, "created_at": iso(c.created_at), "updated_at": iso(c.updated_at),
    }
    if c.site_id is not None:  # a support site's visitor conversation (apps/support)
        out |= {"site_id": c.site_id, "handoff": c.handoff, "handoff_reason": c.handoff_reason,
                "handoff_at": iso(c.handoff_at), "agent_id": c.agent_id}
    if count is not None:
        out["message_count"] = count
    return out


class At(Enum):
    """Where `add_message` puts a message when no parent is named."""

    END = "end"  # after the last message of the active path


def with_siblings(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each message (dicts in position order, one conversation) gets `siblings`: the ids of the
    messages with its parent, itself included, oldest first (the UI's ‹ 2/3 ›)."""
    children: dict[int | None, list[int]] = {}
    for m in messages:
        children.setdefault(m["parent_id"], []).append(m["id"])
    for m in messages:
        m["siblings"] = children[m["parent_id"]]
    return messages


def lineage(messages: Sequence[dict[str, Any]], message_id: int) -> list[dict[str, Any]]:
    """The message and its ancestors, first message first (`messages` in position order)."""
    by_id = {m["id"]: m for m in messages}
    out: list[dict[str, Any]] = []
    m = by_id.get(message_id)
    while m is not None and len(out) < len(by_id):  # the bound: a cycle cannot make it loop forever
        out.append(m)
        m = by_id.get(m["parent_id"]) if m["parent_id"] is not None else None
    return out[::-1]


def shown(messages: Sequence[dict[str, Any]], root_id: int | None) -> list[dict[str, Any]]:
    """The active path as the API gives it: without `active_child_id`, which on the path is the
    next message (the whole tree, `get(every_branch=True)`, keeps it)."""
    return [{k: v for k, v in m.items() if k != "active_child_id"} for m in active_path(messages, root_id)]


def active_path(messages: Sequence[dict[str, Any]], root_id: int | None) -> list[dict[str, Any]]:
    """The branch on screen, first message first (`messages` in position order): the active root,
    then each message's active child; where a pointer is unset or names no child, the newest."""
    children: dict[int | None, list[dict[str, Any]]] = {}
    for m in messages:
        children.setdefault(m["parent_id"], []).append(m)
    path: list[dict[str, Any]] = []
    choice, level = root_id, children.get(None, [])
    while level and len(path) < len(messages):  # the bound: a cycle cannot make it loop forever
        m = next((c for c in level if c["id"] == choice), level[-1])
        path.append(m)
        choice, level = m["active_child_id"], children.get(m["id"], [])
    return path


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


def fork_base(title: str) -> str:
    """The title a fork's title is made from: without its " (fork N)" suffix, if it has one."""
    return _FORK_SUFFIX.sub("", title).rstrip()


def fork_title(title: str, taken: Iterable[str] = ()) -> str:
    """A fork's title: the original's + " (fork)", or " (fork 2)", " (fork 3)", ... where the owner
    already has that title. A fork of a fork numbers from the same base, so suffixes never stack
    ("Trip (fork)" -> "Trip (fork 2)"). Titles are stored data, not UI text: not translated."""
    base, used = fork_base(title), set(taken)
    n = 1
    while True:
        suffix = "(fork)" if n == 1 else f"(fork {n})"
        room = TITLE_MAX - len(suffix) - 1
        head = base if len(base) <= room else base[: room - 1] + "…"
        candidate = f"{head} {suffix}" if head else suffix
        if candidate not in used:
            return candidate
        n += 1


def _show(s: Session, c: Conversation, rows: list[dict[str, Any]], message_id: int) -> None:
    """Point the active path through `message_id`: its root becomes the conversation's active
    root and each ancestor's active child the next one on the way (`rows` are updated too)."""
    line = lineage(rows, message_id)
    c.active_root_id = line[0]["id"]
    for parent, child in zip(line, line[1:], strict=False):
        if parent["active_child_id"] != child["id"]:
            s.execute(update(Message).where(Message.id == parent["id"]).values(active_child_id=child["id"]))
            parent["active_child_id"] = child["id"]


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

    def _rows(self, s: Session, conversation_id: int) -> list[dict[str, Any]]:
        """Every message of the conversation, every branch, in position order, with `siblings`."""
        # Plain rows, not ORM objects: a 1,000-message conversation loads several times faster.
        rows = s.execute(select(*_MESSAGE_COLUMNS, Feedback.rating, Feedback.comment)
                         .outerjoin(Feedback, Feedback.message_id == Message.id)
                         .where(Message.conversation_id == conversation_id).order_by(Message.position))
        return with_siblings([_row_dict(r) for r in rows])

    def get(self, conversation_id: int, *, every_branch: bool = False) -> dict[str, Any]:
        """The conversation with the messages (and their feedback) of its active path, in order;
        every_branch: every message of the tree instead, in position order (to export it)."""
        with self.db.session() as s:
            c = self._get(s, conversation_id)
            out = conversation_dict(c)
            rows = self._rows(s, conversation_id)
            out["messages"] = rows if every_branch else shown(rows, c.active_root_id)
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

    def history(self, conversation_id: int, through: int | None = None
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The conversation and the messages a prompt is built from: the active path, or (through)
        the path from the first message to that one, on whichever branch it is."""
        with self.db.session() as s:
            c = self._get(s, conversation_id)
            rows = self._rows(s, conversation_id)
            if through is None:
                return conversation_dict(c), shown(rows, c.active_root_id)
            if not any(m["id"] == through for m in rows):
                raise NotFoundError("message", through)
            return conversation_dict(c), lineage(rows, through)

    def add_message(self, conversation_id: int, role: str, content: str, *, parent_id: int | None | At = At.END,
                    **fields: Any) -> dict[str, Any]:
        """Add a message (model, reasoning, tokens, prompt_tokens, completion_tokens, finish_reason)
        after `parent_id` (None: a first message; an edit's sibling can be one), by default after
        the last message of the active path. The active path then ends with the new message."""
        with self.db.session() as s:
            c = self._get(s, conversation_id)
            rows = [{"id": r.id, "parent_id": r.parent_id, "active_child_id": r.active_child_id} for r in s.execute(
                select(Message.id, Message.parent_id, Message.active_child_id)
                .where(Message.conversation_id == c.id).order_by(Message.position))]
            if parent_id is At.END:
                path = active_path(rows, c.active_root_id)
                parent_id = path[-1]["id"] if path else None
            elif parent_id is not None and not any(r["id"] == parent_id for r in rows):
                raise NotFoundError("message", parent_id)
            last = s.scalar(select(func.max(Message.position)).where(Message.conversation_id == c.id))
            m = Message(conversation_id=c.id, role=role, content=content,
                        position=0 if last is None else last + 1, parent_id=parent_id, **fields)
            s.add(m)
            if role == "user" and not c.title:
                c.title = title_from(content)
            c.updated_at = utcnow()
            s.flush()
            rows.append({"id": m.id, "parent_id": parent_id, "active_child_id": None})
            _show(s, c, rows, m.id)
            return {**message_dict(m, feedback=None),
                    "siblings": [r["id"] for r in rows if r["parent_id"] == parent_id]}

    def switch_branch(self, conversation_id: int, message_id: int) -> dict[str, Any]:
        """Show the branch through `message_id` (a sibling picked with ‹ ›, or a search hit); below
        it, the branch as it was left. Returns the conversation as `get` does."""
        with self.db.session() as s:
            c = self._get(s, conversation_id)
            rows = self._rows(s, conversation_id)
            if not any(m["id"] == message_id for m in rows):
                raise NotFoundError("message", message_id)
            _show(s, c, rows, message_id)
            out = conversation_dict(c)
            out["messages"] = shown(rows, c.active_root_id)
            out["message_count"] = len(out["messages"])
            return out

    def fork(self, conversation_id: int, message_id: int) -> dict[str, Any]:
        """A new conversation (same settings, same owner) holding the path from the first message
        to `message_id`: copies without their ratings, which stay on the messages rated. Its title
        is the original's marked as a fork (`fork_title`), so the two can be told apart."""
        with self.db.session() as s:
            c = self._get(s, conversation_id)
            rows = self._rows(s, conversation_id)
            if not any(m["id"] == message_id for m in rows):
                raise NotFoundError("message", message_id)
            path = lineage(rows, message_id)
            first_question = next((m["content"] for m in path if m["role"] == "user"), "")
            base = fork_base(c.title or "") or title_from(first_question)
            taken = s.scalars(select(Conversation.title).where(
                self._mine(), Conversation.title.startswith(f"{base} (fork" if base else "(fork", autoescape=True)))
            copy = Conversation(user_id=self.owner, title=fork_title(base, taken), system_prompt=c.system_prompt,
                                model=c.model, params=dict(c.params or {}), knowledge_base_ids=c.knowledge_base_ids)
            s.add(copy)
            s.flush()
            previous: Message | None = None
            for position, m in enumerate(path):
                row = Message(conversation_id=copy.id, position=position,
                              parent_id=None if previous is None else previous.id, **{k: m[k] for k in _COPIED_FIELDS})
                s.add(row)
                s.flush()
                if previous is None:
                    copy.active_root_id = row.id
                else:
                    previous.active_child_id = row.id
                previous = row
            new_id = copy.id
        return self.get(new_id)

    def get_message(self, conversation_id: int, message_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            self._get(s, conversation_id)
            m = s.get(Message, message_id)
            if m is None or m.conversation_id != conversation_id:
                raise NotFoundError("message", message_id)
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
