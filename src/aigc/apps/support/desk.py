"""The support desk: visitors' conversations with a site's assistant, and their hand-off to staff.

A visitor's conversation belongs to the site's owner (so it is grounded in the owner's knowledge
bases and counted in their feedback) but is kept out of the owner's chat list. The visitor holds
a random token (its SHA-256 is stored) that is the only way in from the widget.

Hand-off: the visitor asks for a person ("转人工", "talk to a person", the widget's button), or the
assistant finds no source for a question and the site says so -> the conversation is `waiting` in
the queue. A staff member's reply makes it `active` (theirs); while waiting or active the
assistant stays silent. `resolved` (or handing it back) lets the assistant answer again.

Who sees the queue: administrators and staff see every site's; other users their own sites'.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from sqlalchemy import func, select

from aigc.accounts.principal import Principal
from aigc.apps.chat.conversations import (
    ConversationStore,
    NotFoundError,
    conversation_dict,
    iso,
    message_dict,
)
from aigc.apps.support.sites import SupportError
from aigc.store import Conversation, Database, Message
from aigc.store.models import SupportSite, utcnow

STATES = ("waiting", "active", "resolved")
# "assistant" hands a conversation back: the assistant answers again, nobody is waiting.
STAFF_ACTIONS = {"claim": "active", "resolve": "resolved", "assistant": None}

# Asking for a person, in the words customers use (a message that is mostly this request).
_ASK_PERSON = re.compile(
    r"(转人工|轉人工|人工客服|人工服务|人工服務|找人工|要人工|接人工|真人客服|联系客服|客服人员|人工"
    r"|talk to (a |an )?(person|human|agent|someone|representative)|speak (to|with) (a |an )?(person|human|agent"
    r"|someone|representative)|human agent|real person|live agent|customer service agent|representative please"
    r"|(need|want) (a |an )?(human|person|agent))", re.I)
ASK_PERSON_MAX_CHARS = 60  # a long question that mentions 人工智能 is a question, not a request

HANDOFF_REPLY = {
    "zh": "好的，已为您转接人工客服，请稍候，客服人员会在这里回复您。",
    "en": "I've passed this conversation to a person on our team. Please stay here; they will reply in this chat.",
}
NO_SOURCE_HANDOFF_REPLY = {
    "zh": "抱歉，我在资料里没有找到与这个问题相关的信息。已为您转接人工客服，请稍候。",
    "en": "Sorry, I found nothing about this in our documents. I've passed your question to a person on our "
          "team; please stay here.",
}


def asks_for_person(text: str) -> bool:
    t = text.strip()
    if not t or len(t) > ASK_PERSON_MAX_CHARS:
        return False
    if "人工智能" in t or "人工智慧" in t:
        t = t.replace("人工智能", "").replace("人工智慧", "")
    return _ASK_PERSON.search(t) is not None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def can_staff(viewer: Principal, site_owner: int | None) -> bool:
    return viewer.role in ("admin", "staff") or viewer.owner == site_owner


class SupportDesk:
    def __init__(self, db: Database):
        self.db = db

    # ---- the visitor's side ------------------------------------------------------------------

    def open_visitor(self, site: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """A new conversation for a visitor of `site`: (conversation, the visitor's token)."""
        token = "visitor_" + secrets.token_urlsafe(24)
        with self.db.session() as s:
            c = Conversation(user_id=site["owner_id"], site_id=site["id"], visitor_hash=_token_hash(token),
                             title="", system_prompt="", model=site["model"], params={},
                             knowledge_base_ids=site["knowledge_base_ids"] or None)
            s.add(c)
            s.flush()
            return conversation_dict(c, count=0), token

    def visitor_conversation(self, site: dict[str, Any], conversation_id: int, token: str) -> dict[str, Any]:
        """The conversation if `token` is its visitor's (else not found: nothing confirms it exists)."""
        with self.db.session() as s:
            c = s.get(Conversation, conversation_id)
            if (c is None or c.site_id != site["id"] or c.visitor_hash is None
                    or not hmac.compare_digest(c.visitor_hash, _token_hash(token))):
                raise NotFoundError("conversation", conversation_id)
            return conversation_dict(c)

    def messages_after(self, conversation_id: int, after: int = 0) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(select(Message).where(Message.conversation_id == conversation_id, Message.id > after)
                             .order_by(Message.position))
            return [message_dict(m, feedback=None) for m in rows]

    def request_handoff(self, conversation_id: int, reason: str) -> str:
        """Queue the conversation (no change if a person already has it); returns its state."""
        with self.db.session() as s:
            c = s.get(Conversation, conversation_id)
            if c is None:
                raise NotFoundError("conversation", conversation_id)
            if c.handoff not in ("waiting", "active"):
                c.handoff, c.handoff_reason, c.handoff_at, c.agent_id = "waiting", reason, utcnow(), None
                c.updated_at = utcnow()
            return c.handoff

    def add_visitor_message(self, site: dict[str, Any], conversation_id: int, content: str,
                            tokens: int | None) -> dict[str, Any]:
        """A visitor's message while a person has the conversation (the assistant does not answer)."""
        return ConversationStore(self.db, site["owner_id"]).add_message(conversation_id, "user", content,
                                                                         tokens=tokens)

    # ---- the staff's side --------------------------------------------------------------------

    def _visible(self, viewer: Principal) -> Any:
        if viewer.role in ("admin", "staff"):
            return Conversation.site_id.is_not(None)
        mine = SupportSite.user_id.is_(None) if viewer.owner is None else SupportSite.user_id == viewer.owner
        return Conversation.site_id.in_(select(SupportSite.id).where(mine))

    def queue(self, viewer: Principal, state: str = "open", limit: int = 200) -> list[dict[str, Any]]:
        """Visitor conversations the viewer may answer: `open` (waiting + active, waiting first, oldest
        first), one state, or `all` (every visitor conversation, newest first)."""
        if state not in ("open", "all", *STATES):
            raise SupportError("state must be open, all, waiting, active or resolved", "state")
        with self.db.session() as s:
            q = (select(Conversation, SupportSite.name).join(SupportSite, SupportSite.id == Conversation.site_id)
                 .where(self._visible(viewer)))
            if state == "open":
                q = q.where(Conversation.handoff.in_(("waiting", "active")))
                q = q.order_by(Conversation.handoff.desc(), Conversation.handoff_at, Conversation.id)
            elif state == "all":
                q = q.order_by(Conversation.updated_at.desc(), Conversation.id.desc())
            else:
                q = q.where(Conversation.handoff == state).order_by(Conversation.handoff_at.desc())
            rows = s.execute(q.limit(limit)).all()
            ids = [c.id for c, _ in rows]
            last: dict[int, Message] = {}
            if ids:
                newest = (select(func.max(Message.id)).where(Message.conversation_id.in_(ids))
                          .group_by(Message.conversation_id))
                last = {m.conversation_id: m for m in s.scalars(select(Message).where(Message.id.in_(newest)))}
            out = []
            for c, site_name in rows:
                m = last.get(c.id)
                out.append({**conversation_dict(c), "site_name": site_name,
                            "last_message": ({"role": m.role, "content": m.content[:200], "author": m.author,
                                              "created_at": iso(m.created_at)} if m is not None else None)})
            return out

    def _staffed(self, s: Any, viewer: Principal, conversation_id: int) -> Conversation:
        c = s.get(Conversation, conversation_id)
        if c is None or c.site_id is None:
            raise NotFoundError("conversation", conversation_id)
        owner = s.scalar(select(SupportSite.user_id).where(SupportSite.id == c.site_id))
        if not can_staff(viewer, owner):
            raise NotFoundError("conversation", conversation_id)
        return c

    def conversation(self, viewer: Principal, conversation_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            c = self._staffed(s, viewer, conversation_id)
            owner, site_name = s.execute(select(SupportSite.user_id, SupportSite.name)
                                         .where(SupportSite.id == c.site_id)).one()
        out = ConversationStore(self.db, owner).get(conversation_id)
        return {**out, "site_name": site_name}

    def staff_reply(self, viewer: Principal, conversation_id: int, content: str) -> dict[str, Any]:
        """A staff member answers: the conversation becomes theirs (`active`)."""
        if not content.strip():
            raise SupportError("the message is empty", "content")
        with self.db.session() as s:
            c = self._staffed(s, viewer, conversation_id)
            owner = c.user_id
            c.handoff, c.agent_id = "active", viewer.user_id
            c.handoff_at = c.handoff_at or utcnow()
            c.handoff_reason = c.handoff_reason or "staff"
        return ConversationStore(self.db, owner).add_message(conversation_id, "assistant", content,
                                                             author=viewer.name, finish_reason="stop")

    def set_state(self, viewer: Principal, conversation_id: int, action: str) -> dict[str, Any]:
        """claim (a person answers), resolve (done; the assistant answers again), assistant (hand back)."""
        if action not in STAFF_ACTIONS:
            raise SupportError("action must be claim, resolve or assistant", "action")
        with self.db.session() as s:
            c = self._staffed(s, viewer, conversation_id)
            state = STAFF_ACTIONS[action]
            c.handoff = state
            c.agent_id = viewer.user_id if state == "active" else (c.agent_id if state == "resolved" else None)
            if state == "active" and c.handoff_at is None:
                c.handoff_at, c.handoff_reason = utcnow(), "staff"
            c.updated_at = utcnow()
            s.flush()
            return conversation_dict(c)
