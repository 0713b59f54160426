"""Rated replies as training data: TRL's conversational datasets, one JSON object per line.

- KTO (unpaired preferences): `{"prompt": [messages], "completion": [assistant], "label": bool}`,
  one per rated reply (True for 👍, False for 👎);
- DPO (pairs): `{"prompt": [messages], "chosen": [assistant], "rejected": [assistant]}`, from a 👍
  reply over a 👎 sibling (assistant messages with the same `parent_id`: regenerations of one
  answer), and from any other source of pairs (arena votes) through `dpo_record`;
- SFT: `{"messages": [...]}`, the 👍 replies with their prompts.

The prompt is what the model answered: the conversation's system prompt and the reply's ancestors
(the `parent_id` chain, so a reply on another branch never sees this branch's messages), as the chat
app builds it (`replies.prompt_messages`). Replies are left out when they are not a model's answer
to that prompt: empty or failed ones, and grounded ones, whose retrieved sources were in a system
message that is not stored (trained without them they would teach the model to make facts up).

These load with `datasets.load_dataset("json", data_files=PATH)` into the columns TRL's
DPOTrainer / KTOTrainer / SFTTrainer read, and `aigc train dpo|kto|sft` reads them as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased

from aigc.apps.chat.replies import prompt_messages
from aigc.store import Conversation, Database, Feedback, Message
from aigc.store.models import ArenaBattle

FORMATS = ("kto", "dpo", "sft")
ANY_OWNER: Literal["any"] = "any"
_IN_CHUNK = 500  # ids per IN (...) list: SQLite's limit on bound variables is 999 on old builds

Owner = int | None | Literal["any"]
ChatMessage = dict[str, str]


class FeedbackExportError(ValueError):
    """A request the export cannot answer (unknown format, malformed pair): one line, exit code 2."""


@dataclass
class ExportSummary:
    """What an export wrote and what it left out (and why)."""

    format: str
    records: int = 0
    positive: int = 0  # 👍 replies among the records (KTO, SFT)
    negative: int = 0  # 👎 replies among the records (KTO)
    arena: int = 0  # DPO pairs from arena / compare votes
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def describe(self) -> str:
        what = {"kto": f"{self.records} rated replies ({self.positive} 👍, {self.negative} 👎)",
                "dpo": f"{self.records} preference pairs" + (f" ({self.arena} from arena votes)" if self.arena else ""),
                "sft": f"{self.records} 👍 conversations"}[self.format]
        left = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return what + (f"; left out: {left}" if left else "")


# ---- records (TRL's conversational format) -----------------------------------------------------

def _prompt(prompt: str | Sequence[ChatMessage]) -> list[ChatMessage]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    out = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
    if not any(m["role"] == "user" for m in out):
        raise FeedbackExportError("a prompt needs a user message")
    if out[-1]["role"] == "assistant":
        raise FeedbackExportError("a prompt ends before the reply; its last message is an assistant's")
    return out


def _reply(reply: str | ChatMessage | Sequence[ChatMessage]) -> list[ChatMessage]:
    if isinstance(reply, str):
        return [{"role": "assistant", "content": reply}]
    if isinstance(reply, dict):
        reply = [reply]
    if len(reply) != 1 or reply[0].get("role") != "assistant":
        raise FeedbackExportError("a reply must be one assistant message")
    return [{"role": "assistant", "content": str(reply[0]["content"])}]


def kto_record(prompt: str | Sequence[ChatMessage], completion: str | ChatMessage, label: bool) -> dict[str, Any]:
    return {"prompt": _prompt(prompt), "completion": _reply(completion), "label": bool(label)}


def dpo_record(prompt: str | Sequence[ChatMessage], chosen: str | ChatMessage,
               rejected: str | ChatMessage) -> dict[str, Any]:
    """One DPO pair: `chosen` was preferred over `rejected` as answers to `prompt` (a text is a
    single user turn / a single assistant reply)."""
    record = {"prompt": _prompt(prompt), "chosen": _reply(chosen), "rejected": _reply(rejected)}
    if record["chosen"] == record["rejected"]:
        raise FeedbackExportError("the chosen and the rejected reply are the same text")
    return record


def preference_pairs(pairs: Iterable[tuple[Any, Any, Any]]) -> Iterator[dict[str, Any]]:
    """DPO records from (prompt, chosen, rejected) triples from anywhere: arena votes (the winner is
    chosen; skip ties), pairwise labelling, ... Pairs whose replies are equal are left out."""
    for prompt, chosen, rejected in pairs:
        try:
            yield dpo_record(prompt, chosen, rejected)
        except FeedbackExportError as e:
            if "same text" not in str(e):
                raise


def sft_record(prompt: str | Sequence[ChatMessage], reply: str | ChatMessage) -> dict[str, Any]:
    return {"messages": _prompt(prompt) + _reply(reply)}


def jsonl_lines(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    for r in records:
        yield json.dumps(r, ensure_ascii=False) + "\n"


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write records to `path` (complete or not at all: a temporary file renamed at the end)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    n = 0
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for line in jsonl_lines(records):
                f.write(line)
                n += 1
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


# ---- from the database ---------------------------------------------------------------------------

NOT_THE_MODELS = ("error", "no_source", "handoff")  # failed, or a canned text instead of the model's


def _answers(m: Any) -> Any:
    """SQL side of the filter: non-empty assistant messages."""
    return and_(m.role == "assistant", m.content != "")


def _left_out(finish_reason: str | None, sources: Any) -> str | None:
    """Why a reply is not a model's answer to its stored prompt (see the module's docstring)."""
    if finish_reason in NOT_THE_MODELS:
        return "failed or canned replies"
    if sources:  # JSON: None, null or [] when nothing was retrieved
        return "grounded replies (their sources are not stored)"
    return None


class _Prompts:
    """Prompts of replies, built from their conversations' messages loaded once per conversation."""

    def __init__(self, s: Session):
        self.s = s
        self.messages: dict[int, Any] = {}
        self.conversations: dict[int, dict[str, Any]] = {}

    def load(self, conversation_ids: Iterable[int]) -> None:
        todo = sorted(set(conversation_ids) - set(self.conversations))
        for i in range(0, len(todo), _IN_CHUNK):
            chunk = todo[i : i + _IN_CHUNK]
            for c in self.s.execute(select(Conversation.id, Conversation.system_prompt)
                                    .where(Conversation.id.in_(chunk))):
                self.conversations[c.id] = {"system_prompt": c.system_prompt or ""}
            for m in self.s.execute(select(Message.id, Message.conversation_id, Message.parent_id, Message.role,
                                           Message.content).where(Message.conversation_id.in_(chunk))):
                self.messages[m.id] = m

    def of(self, reply_id: int) -> list[ChatMessage] | None:
        """System prompt + the reply's ancestors, oldest first; None when it answers no user message."""
        reply = self.messages[reply_id]
        chain, seen = [], {reply_id}
        parent = reply.parent_id
        while parent is not None and parent not in seen:  # `seen`: a corrupt cycle cannot loop forever
            m = self.messages.get(parent)
            if m is None:
                break
            seen.add(parent)
            chain.append({"id": m.id, "role": m.role, "content": m.content})
            parent = m.parent_id
        chain.reverse()
        if not any(m["role"] == "user" for m in chain) or chain[-1]["role"] == "assistant":
            return None
        out = prompt_messages(self.conversations[reply.conversation_id], chain)
        return [{"role": m["role"], "content": m["content"]} for m in out]


def _scope(query: Any, message: Any, owner: Owner, model: str | None) -> Any:
    query = query.join(Conversation, Conversation.id == message.conversation_id)
    if owner != ANY_OWNER:
        query = query.where(Conversation.user_id.is_(None) if owner is None else Conversation.user_id == owner)
    if model is not None:
        query = query.where(message.model == model)
    return query


def _rated(s: Session, owner: Owner, model: str | None, *, only_positive: bool) -> list[Any]:
    q = (select(Message.id, Message.conversation_id, Message.content, Message.finish_reason, Message.sources,
                Feedback.rating)
         .join(Feedback, Feedback.message_id == Message.id).where(_answers(Message)))
    if only_positive:
        q = q.where(Feedback.rating > 0)
    return list(s.execute(_scope(q, Message, owner, model).order_by(Message.id)))


def sibling_pairs(s: Session, owner: Owner, model: str | None) -> list[Any]:
    """(chosen, rejected) rows: a 👍 assistant message and a 👎 one with the same parent (DPO pairs
    here, and arena votes when two models wrote them)."""
    chosen, rejected = aliased(Message), aliased(Message)
    liked, disliked = aliased(Feedback), aliased(Feedback)
    q = (select(chosen.id.label("chosen_id"), rejected.id.label("rejected_id"), chosen.conversation_id,
                chosen.content.label("chosen"), rejected.content.label("rejected"),
                chosen.model.label("chosen_model"), rejected.model.label("rejected_model"),
                chosen.finish_reason.label("chosen_finish"), chosen.sources.label("chosen_sources"),
                rejected.finish_reason.label("rejected_finish"), rejected.sources.label("rejected_sources"))
         .join(liked, liked.message_id == chosen.id)
         .join(rejected, and_(rejected.parent_id == chosen.parent_id, rejected.id != chosen.id))
         .join(disliked, disliked.message_id == rejected.id)
         .where(chosen.parent_id.is_not(None), liked.rating > 0, disliked.rating < 0,
                _answers(chosen), _answers(rejected)))
    if model is not None:  # a pair of replies both written by `model` (for training that model)
        q = q.where(rejected.model == model)
    return list(s.execute(_scope(q, chosen, owner, model).order_by(chosen.id, rejected.id)))


def _arena_pairs(s: Session, owner: Owner, model: str | None) -> Iterator[tuple[list[ChatMessage], str, str]]:
    """(prompt, chosen, rejected) from arena and compare votes that picked a side (ties and "both
    bad" prefer neither). With `model`: the battles that model fought."""
    q = select(ArenaBattle).where(ArenaBattle.winner.in_(("a", "b")))
    if owner != ANY_OWNER:
        q = q.where(ArenaBattle.user_id.is_(None) if owner is None else ArenaBattle.user_id == owner)
    if model is not None:
        q = q.where((ArenaBattle.model_a == model) | (ArenaBattle.model_b == model))
    for b in s.scalars(q.order_by(ArenaBattle.id)):
        chosen, rejected = (b.reply_a, b.reply_b) if b.winner == "a" else (b.reply_b, b.reply_a)
        if chosen.strip() and rejected.strip() and chosen != rejected:
            yield list(b.messages), chosen, rejected


def export_feedback(db: Database, fmt: str, *, owner: Owner = ANY_OWNER, model: str | None = None
                    ) -> tuple[list[dict[str, Any]], ExportSummary]:
    """The records of one format and what was left out. `owner`: a user id, None (the single-user
    room), or ANY_OWNER (everyone's); `model`: only replies that model wrote."""
    if fmt not in FORMATS:
        raise FeedbackExportError(f"unknown format {fmt!r}; choose {', '.join(FORMATS)}")
    summary = ExportSummary(fmt)
    records: list[dict[str, Any]] = []
    with db.session() as s:
        prompts = _Prompts(s)
        if fmt == "dpo":
            rows = sibling_pairs(s, owner, model)
            prompts.load(r.conversation_id for r in rows)
            for r in rows:
                why = (_left_out(r.chosen_finish, r.chosen_sources)
                       or _left_out(r.rejected_finish, r.rejected_sources))
                prompt = prompts.of(r.chosen_id) if why is None else None
                if why is None and prompt is None:
                    why = "replies to no user message"
                if why is None and r.chosen == r.rejected:
                    why = "pairs of equal replies"
                if why is not None:
                    summary.skip(why)
                    continue
                records.append(dpo_record(prompt, r.chosen, r.rejected))
            for messages, chosen_reply, rejected_reply in _arena_pairs(s, owner, model):
                records.append(dpo_record(messages, chosen_reply, rejected_reply))
                summary.arena += 1
        else:
            rows = _rated(s, owner, model, only_positive=fmt == "sft")
            prompts.load(r.conversation_id for r in rows)
            for r in rows:
                why = _left_out(r.finish_reason, r.sources)
                prompt = prompts.of(r.id) if why is None else None
                if why is None and prompt is None:
                    why = "replies to no user message"
                if why is not None:
                    summary.skip(why)
                    continue
                records.append(kto_record(prompt, r.content, r.rating > 0) if fmt == "kto"
                               else sft_record(prompt, r.content))
                if r.rating > 0:
                    summary.positive += 1
                else:
                    summary.negative += 1
    summary.records = len(records)
    return records, summary


def owner_id(db: Database, name: str | None) -> Owner:
    """ANY_OWNER for no name, else the id of the user called `name` (LookupError if none)."""
    if name is None:
        return ANY_OWNER
    from aigc.accounts import UserStore

    try:
        return UserStore(db).by_name(name).id
    except ValueError as e:  # AccountError: "no user named ..."
        raise LookupError(str(e)) from None
