"""Export a conversation as Markdown (to read) or JSON (to keep or move), and import that JSON.

The JSON is self-describing (`"format": "aigc.conversation"`) and carries everything the app
stores about a message except database ids, so an import creates a fresh conversation. It keeps
the whole tree (version 2): messages in the order they were made, each with `parent`, the index
of the message it follows (null for a first message), and `active_child`, the index of the child
the branch on screen continues with; `active_root` is the index of the first message it starts
at (conversations.py). Null pointers mean the newest; a file without `parent` (version 1) is one
linear branch. Markdown is for reading: the active path only.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from aigc.apps.chat.conversations import ConversationStore, title_from
from aigc.apps.chat.model import ParamsIn
from aigc.store import Conversation, Feedback, Message

FORMAT = "aigc.conversation"
ROLES = ("system", "user", "assistant")
_MESSAGE_FIELDS = ("reasoning", "model", "tokens", "prompt_tokens", "completion_tokens", "finish_reason")


class TranscriptError(ValueError):
    """An import that is not a conversation; the message says what is wrong (the API answers 422)."""


def export_json(conversation: dict[str, Any]) -> dict[str, Any]:
    """`conversation`: ConversationStore.get(..., every_branch=True) (the whole tree; `get` without
    it gives the active path alone, one branch)."""
    messages = conversation["messages"]
    index = {m["id"]: i for i, m in enumerate(messages)}
    return {
        "format": FORMAT, "version": 2,
        **{k: conversation[k] for k in ("title", "system_prompt", "model", "params", "created_at", "updated_at")},
        "messages": [
            {**{k: m[k] for k in ("role", "content", *_MESSAGE_FIELDS, "created_at", "feedback")},
             "parent": index.get(m["parent_id"]), "active_child": index.get(m.get("active_child_id"))}
            for m in messages
        ],
        "active_root": index.get(conversation["active_root_id"]),
    }


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks inside `text`."""
    longest, run = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def export_markdown(conversation: dict[str, Any]) -> str:
    lines = [f"# {conversation['title'] or 'Conversation'}", ""]
    meta = [f"- Model: {conversation['model'] or '-'}", f"- Created: {conversation['created_at']}"]
    if conversation.get("params"):
        meta.append("- Parameters: " + ", ".join(f"{k}={v}" for k, v in conversation["params"].items()))
    lines += meta + [""]
    if conversation["system_prompt"]:
        fence = _fence(conversation["system_prompt"])
        lines += ["## System", "", fence, conversation["system_prompt"], fence, ""]
    for m in conversation["messages"]:
        who = {"user": "User", "assistant": "Assistant", "system": "System"}.get(m["role"], m["role"])
        head = f"## {who}"
        if m["role"] == "assistant" and m.get("model"):
            head += f" ({m['model']})"
        lines += [head, ""]
        if m.get("reasoning"):  # a reasoning model's thinking, quoted above its answer
            lines += ["> *Thinking*", ">", *(f"> {line}".rstrip() for line in m["reasoning"].splitlines()), ""]
        lines += [m["content"], ""]
        if m.get("finish_reason") == "stopped":
            lines += ["*(stopped)*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _str(data: dict[str, Any], key: str, where: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise TranscriptError(f"{where}.{key} must be a string")
    return value


def _opt_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise TranscriptError(f"{where} must be an integer from 0 to 2147483647")
    return value


def _index(value: Any, where: str, below: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < below:
        raise TranscriptError(f"{where} must be the index of an earlier message (0 to {below - 1})" if below
                              else f"{where} must be null: there is no earlier message")
    return value


def _pointer(value: Any, where: str, messages: list[dict[str, Any]], parent: int | None) -> int | None:
    """An `active_child` (or, parent None, the `active_root`): null, or the index of a child."""
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(messages)
            or messages[value]["parent"] != parent):
        raise TranscriptError(f"{where} must be null or the index of a message whose parent is "
                              + ("null" if parent is None else str(parent)))
    return value


def parse_import(data: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Validate an exported conversation; returns (conversation fields, messages). Each message's
    `parent` and `active_child` are indexes or None, and so is the fields' `active_root`."""
    if not isinstance(data, dict):
        raise TranscriptError("a conversation must be a JSON object")
    if data.get("format", FORMAT) != FORMAT:
        raise TranscriptError(f"format must be {FORMAT!r}, got {data.get('format')!r}")
    raw = data.get("messages")
    if not isinstance(raw, list):
        raise TranscriptError("messages must be a list")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise TranscriptError("params must be an object")
    try:  # the API's own bounds: an import cannot set what a request could not
        params = ParamsIn.model_validate(params).model_dump(exclude_none=True)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise TranscriptError(f"params.{where}: {first.get('msg')}") from None
    conv = {"title": _str(data, "title", "conversation")[:200], "system_prompt": _str(data, "system_prompt", "conversation"),
            "model": _str(data, "model", "conversation") or None, "params": params}
    messages = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise TranscriptError(f"{where} must be an object")
        if m.get("role") not in ROLES:
            raise TranscriptError(f"{where}.role must be one of {', '.join(ROLES)}")
        out: dict[str, Any] = {"role": m["role"], "content": _str(m, "content", where)}
        # No `parent` (version 1): the previous message, as in the linear conversations it held.
        parent = m.get("parent", i - 1 if i else None)
        out["parent"] = None if parent is None else _index(parent, f"{where}.parent", i)
        out["reasoning"] = _str(m, "reasoning", where) or None
        out["model"] = _str(m, "model", where) or None
        out["finish_reason"] = _str(m, "finish_reason", where)[:16] or None
        for key in ("tokens", "prompt_tokens", "completion_tokens"):
            out[key] = _opt_int(m.get(key), f"{where}.{key}")
        fb = m.get("feedback")
        if fb is not None:
            if not isinstance(fb, dict) or fb.get("rating") not in (1, -1):
                raise TranscriptError(f"{where}.feedback must be {{'rating': 1 or -1, 'comment': str}}")
            out["feedback"] = {"rating": fb["rating"], "comment": _str(fb, "comment", f"{where}.feedback")}
        messages.append(out)
    for i, (m, out) in enumerate(zip(raw, messages, strict=True)):
        out["active_child"] = _pointer(m.get("active_child"), f"messages[{i}].active_child", messages, i)
    conv["active_root"] = _pointer(data.get("active_root"), "active_root", messages, None)
    if not conv["title"]:
        first = next((m["content"] for m in messages if m["role"] == "user"), "")
        conv["title"] = title_from(first) if first else "Imported conversation"
    return conv, messages


def import_json(store: ConversationStore, data: Any) -> dict[str, Any]:
    """Create a new conversation from exported JSON (one transaction: all or nothing)."""
    conv, messages = parse_import(data)
    root = conv.pop("active_root")
    children = [m.pop("active_child") for m in messages]
    with store.db.session() as s:
        c = Conversation(**conv, user_id=store.owner)
        s.add(c)
        s.flush()
        rows: list[Message] = []
        for position, m in enumerate(messages):
            feedback = m.pop("feedback", None)
            parent = m.pop("parent")
            row = Message(conversation_id=c.id, position=position,
                          parent_id=None if parent is None else rows[parent].id, **m)
            if feedback is not None:
                row.feedback = Feedback(**feedback)
            s.add(row)
            s.flush()
            rows.append(row)
        # Children come after their parents: the pointers are set once every row has its id.
        for row, child in zip(rows, children, strict=True):
            row.active_child_id = None if child is None else rows[child].id
        c.active_root_id = None if root is None else rows[root].id
        conversation_id = c.id
    return store.get(conversation_id)
