"""A web-app database holding rated conversations with branches, for the feedback-export and
preference-training tests.

Rows go in with SQLAlchemy core on the real tables, made by the real migrations (0007's message
tree included): a regenerated reply is an assistant message with the same `parent_id` as the reply
it replaces, as the chat app stores it, without depending on the app's conversation API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select

from aigc.store import Conversation, Database, Feedback, Message

MODEL = "tiny"


@dataclass
class Builder:
    db: Database
    ids: dict[str, int] = field(default_factory=dict)

    def conversation(self, owner: int | None = None, system_prompt: str = "", name: str | None = None) -> int:
        with self.db.engine.begin() as c:
            cid = c.execute(insert(Conversation.__table__).values(
                user_id=owner, title=name or "chat", system_prompt=system_prompt, params={})).inserted_primary_key[0]
        if name:
            self.ids[name] = cid
        return cid

    def message(self, conversation: int, role: str, content: str, parent: int | None, *, name: str | None = None,
                rating: int | None = None, model: str | None = MODEL, **fields: Any) -> int:
        with self.db.engine.begin() as c:
            position = c.scalar(select(func.count()).select_from(Message.__table__)
                                .where(Message.__table__.c.conversation_id == conversation))
            mid = c.execute(insert(Message.__table__).values(
                conversation_id=conversation, role=role, content=content, parent_id=parent, position=position,
                model=model if role == "assistant" else None, **fields)).inserted_primary_key[0]
            if rating is not None:
                c.execute(insert(Feedback.__table__).values(message_id=mid, rating=rating, comment=""))
        if name:
            self.ids[name] = mid
        return mid


def branching_database(url: str, owner: int | None = None, other_owner: int | None = None) -> Builder:
    """Two owners' conversations: regenerated replies rated 👍 and 👎 (siblings), a follow-up on the
    liked branch, an unrated sibling, and replies the export leaves out (grounded, failed, canned,
    empty, another model's)."""
    b = Builder(Database(url))
    sky = b.conversation(owner, system_prompt="Answer in one word.", name="sky")
    q1 = b.message(sky, "user", "What colour is the sky?", None, name="q1")
    b.message(sky, "assistant", "Blue.", q1, name="blue", rating=1, finish_reason="stop")
    b.message(sky, "assistant", "Green, obviously.", q1, name="green", rating=-1, finish_reason="stop")
    q2 = b.message(sky, "user", "And grass?", b.ids["blue"], name="q2")
    b.message(sky, "assistant", "Green.", q2, name="grass", rating=1, finish_reason="stop")

    maths = b.conversation(other_owner, name="maths")
    q = b.message(maths, "user", "2+2?", None, name="q3")
    b.message(maths, "assistant", "4", q, name="four", rating=1, finish_reason="stop")
    b.message(maths, "assistant", "5", q, name="five", rating=-1, finish_reason="stop")
    b.message(maths, "assistant", "four", q, name="unrated")
    b.message(maths, "assistant", "22", q, name="other-model", rating=-1, model="big", finish_reason="stop")
    q = b.message(maths, "user", "Cite the manual.", b.ids["four"])
    b.message(maths, "assistant", "Page 3 says so [1].", q, name="grounded", rating=-1, finish_reason="stop",
              sources=[{"n": 1, "document": "manual.pdf", "text": "..."}])
    b.message(maths, "assistant", "", q, name="empty", rating=-1, finish_reason="stopped")
    b.message(maths, "assistant", "I could not find that in your documents.", q, name="canned", rating=-1,
              finish_reason="no_source")
    return b


def pong_database(url: str, n: int = 16) -> Builder:
    """n conversations "ping i" whose regenerated replies were rated: "pong" 👍 over "nope" 👎."""
    b = Builder(Database(url))
    for i in range(n):
        c = b.conversation()
        q = b.message(c, "user", f"ping {i}", None)
        b.message(c, "assistant", "pong", q, rating=1, finish_reason="stop")
        b.message(c, "assistant", "nope", q, rating=-1, finish_reason="stop")
    return b
