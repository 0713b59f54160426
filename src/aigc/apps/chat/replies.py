"""Generating an assistant reply: plan (fit the context), start the model, stream, persist.

Three ways to ask for a reply, all ending in the same stream of events:
- send: add a user message at the end of the active path, answer it;
- regenerate: answer the active path's last user message again; the old reply stays, a sibling
  of the new one (conversations.py: messages form a tree);
- edit: a user message's new text becomes its sibling, answered with the path above it.

Nothing is written until the model has accepted the request (a busy model leaves the conversation
as it was). Then the user's side is written at once, and the reply when it ends -- also when the
user stops it or the client disconnects: the partial text is kept with finish_reason "stopped".

Events (dicts; the server sends each as one SSE `data:` line):
  {"type": "start", "user_message": {...} | None, "context": {...}, "model": name}
  {"type": "reasoning", "text": "..."}   a reasoning model's thinking, before its deltas
  {"type": "delta", "text": "..."}
  {"type": "done", "message": {...}, "context": {...}}
  {"type": "error", "error": {"message": ..., "type": ..., "code": ...}, "message": {...} | None}
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aigc.apps.chat.context import ContextOverflowError, FittedContext
from aigc.apps.chat.conversations import At, ConversationStore, NotFoundError
from aigc.apps.chat.model import ChatModel, GenerationParams, Reasoning, ReplyStream

log = logging.getLogger("aigc.apps.chat")


class ReplyError(ValueError):
    """A reply that cannot be asked for (nothing to answer, params that do not fit); API 400."""

    def __init__(self, message: str, code: str = "invalid_request", param: str | None = None):
        super().__init__(message)
        self.code, self.param = code, param


def fit_reply(model: ChatModel, params: GenerationParams, messages: list[dict[str, Any]]) -> FittedContext:
    """`messages` fitted into the model's window with room for `params.max_tokens` of reply: the one
    check every way to a reply makes (chat, studio, arena, eval runs)."""
    if params.max_tokens >= model.window:
        raise ReplyError(f"max_tokens ({params.max_tokens}) must be smaller than the model's context "
                         f"window ({model.window} tokens)", code="invalid_value", param="params.max_tokens")
    try:
        return model.fit(messages, model.window - params.max_tokens)
    except ContextOverflowError as e:
        raise ReplyError(str(e), code="context_length_exceeded") from None


@dataclass
class ReplyPlan:
    conversation_id: int
    model: ChatModel
    params: GenerationParams
    fitted: FittedContext
    # Database changes that make the active path end at the message to answer; run once the model
    # accepted the request. Returns the new user message (send/edit) or None (regenerate).
    commit: Callable[[], dict[str, Any] | None]
    context: dict[str, Any] = field(default_factory=dict)
    # Grounding: the sources put in the prompt (None: the conversation uses no knowledge base);
    # `canned` is the reply given instead of the model's when no source passed the bar.
    sources: list[dict[str, Any]] | None = None
    canned: str | None = None
    canned_reason: str = "no_source"  # the canned reply's finish_reason (support: "handoff")
    # regenerate: the message answered (send and edit answer the user message `commit` returns)
    reply_to: int | None = None


# A knowledge-base search: (knowledge base ids, query) -> hits as dicts (knowledge/store.py Hit).
Retriever = Callable[[list[int], str], list[dict[str, Any]]]
SOURCES_PER_TURN = 4
_CJK = re.compile(r"[\u3400-\u9fff]")
_FOLLOW_UP = re.compile(r"^\s*(那|那么|还有|另外|and\b|what about\b|how about\b|also\b)", re.I)
NO_SOURCE = {
    "zh": "抱歉，我在知识库里没有找到与这个问题相关的资料，所以无法回答。可以换个说法再问，或者转人工客服。",
    "en": "Sorry, I found no relevant source in the knowledge base, so I cannot answer that. You can rephrase "
          "the question, or ask to talk to a person.",
}
SOURCES_PROMPT = {
    "zh": "请只根据下面编号的资料回答用户的问题，并在用到的句子后用 [编号] 注明出处（例如 [1]）。"
          "资料里没有的内容，请说明没有找到，不要编造。\n\n",
    "en": "Answer the user's question using only the numbered sources below, and cite the ones you use as [n] "
          "(for example [1]). If the sources do not say, tell the user so; do not make anything up.\n\n",
}


def language_of(text: str) -> str:
    """"zh" for text with Chinese characters, else "en": the language a fixed reply is given in."""
    return "zh" if _CJK.search(text) else "en"


def retrieval_query(messages: list[dict[str, Any]]) -> str:
    """The question to search for: the last user message, with the previous one in front when the
    last reads as a follow-up ("那运费呢？" after a question about returns)."""
    users = [m["content"] for m in messages if m["role"] == "user" and m["content"].strip()]
    if not users:
        return ""
    last = users[-1].strip()
    short = len(last) <= 12 if _CJK.search(last) else len(last.split()) <= 5
    if len(users) > 1 and (short or _FOLLOW_UP.match(last)):
        return f"{users[-2].strip()} {last}"
    return last


class CannedReply:
    """A ReplyStream that says a fixed text without a model (the "no relevant source" answer, a
    support hand-off's); it ends with `reason` as its finish_reason."""

    def __init__(self, text: str, prompt_tokens: int = 0, reason: str = "no_source"):
        self._text = text
        self._reason = reason
        self.finish_reason: str | None = None
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0

    async def __aiter__(self) -> AsyncIterator[str]:
        if self.finish_reason is None:
            yield self._text
            self.finish_reason = self._reason

    def cancel(self) -> None:
        self.finish_reason = self.finish_reason or "abort"


def prompt_messages(conversation: dict[str, Any], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """System prompt + history as template messages; each keeps its database `id` (None if new)."""
    out: list[dict[str, Any]] = []
    if conversation["system_prompt"].strip():
        out.append({"id": None, "role": "system", "content": conversation["system_prompt"]})
    for m in messages:
        if m["role"] == "assistant" and not m["content"]:
            continue  # a reply stopped before its first token (or while thinking) says nothing to the model
        # A reply's stored reasoning stays out: templates drop earlier turns' thinking anyway.
        out.append({"id": m["id"], "role": m["role"], "content": m["content"]})
    return out


def context_report(model: ChatModel, fitted: FittedContext, reserved: int) -> dict[str, Any]:
    """What the UI's meter shows: tokens used of the window and which messages fell out."""
    return {"used_tokens": fitted.used, "window": model.window, "reserved_tokens": reserved,
            "dropped_messages": [m["id"] for m in fitted.dropped if m.get("id") is not None],
            "exact": model.exact_tokens}


def ground(messages: list[dict[str, Any]], kb_ids: list[int], retriever: Retriever | None
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, str | None]:
    """(messages with the sources in a system message, the sources, a canned no-source reply).
    Sources are None when no knowledge base is attached; [] with the canned reply when none passed."""
    if not kb_ids or retriever is None:
        return messages, None, None
    query = retrieval_query(messages)
    language = language_of(query)
    hits = retriever(kb_ids, query) if query else []
    if not hits:
        return messages, [], NO_SOURCE[language]
    sources = [{"n": i, "knowledge_base_id": h["knowledge_base_id"], "document": h["document"],
                "heading": h["heading"], "text": h["text"], "start": h["start"], "end": h["end"],
                "score": h["score"]} for i, h in enumerate(hits[:SOURCES_PER_TURN], 1)]
    listing = "\n\n".join(f"[{s['n']}] {s['document']['filename']}" + (f" › {s['heading']}" if s["heading"] else "")
                           + f"\n{s['text']}" for s in sources)
    grounding = {"id": None, "role": "system", "content": SOURCES_PROMPT[language] + listing}
    at = 1 if messages and messages[0]["role"] == "system" else 0
    return messages[:at] + [grounding] + messages[at:], sources, None


class ChatReplies:
    def __init__(self, store: ConversationStore, retriever: Retriever | None = None,
                 redact: Callable[[str], str] | None = None):
        self.store = store
        self.retriever = retriever
        # --redact-pii store: messages are saved with personal data replaced by placeholders (the
        # model still answers the words the user typed; the next turn sees the saved ones).
        self._redact = redact

    def _stored(self, text: str) -> str:
        return self._redact(text) if self._redact is not None and text else text

    # ---------------------------------------------------------------- planning

    def _plan(self, conversation_id: int, model: ChatModel, params: GenerationParams,
              messages: list[dict[str, Any]], commit: Callable[[], dict[str, Any] | None],
              conversation: dict[str, Any] | None = None) -> ReplyPlan:
        kb_ids = (conversation or {}).get("knowledge_base_ids") or []
        messages, sources, canned = ground(messages, kb_ids, self.retriever)
        fitted = fit_reply(model, params, messages)
        return ReplyPlan(conversation_id, model, params, fitted, commit, context_report(model, fitted, params.max_tokens),
                         sources, canned)

    def plan_send(self, conversation_id: int, content: str, model: ChatModel, params: GenerationParams) -> ReplyPlan:
        if not content.strip():
            raise ReplyError("the message is empty", code="empty_message")
        conversation, history = self.store.history(conversation_id)
        # A user message with no reply after it: the server stopped mid-reply (a crash). The lost
        # reply is recorded as an empty, stopped one, so turns keep alternating (chat templates
        # expect it) instead of two user messages in a row.
        orphan = bool(history) and history[-1]["role"] == "user"
        gap = [{"id": None, "role": "assistant", "content": ""}] if orphan else []
        messages = prompt_messages(conversation, history) + gap + [{"id": None, "role": "user", "content": content}]

        def commit() -> dict[str, Any]:
            parent = history[-1]["id"] if history else None  # the path the prompt was built from
            if orphan:
                parent = self.store.add_message(conversation_id, "assistant", "", parent_id=parent,
                                                finish_reason="stopped", tokens=0)["id"]
            saved = self._stored(content)
            return self.store.add_message(conversation_id, "user", saved, parent_id=parent,
                                          tokens=model.count_tokens(saved))

        return self._plan(conversation_id, model, params, messages, commit, conversation)

    def plan_regenerate(self, conversation_id: int, model: ChatModel, params: GenerationParams) -> ReplyPlan:
        conversation, history = self.store.history(conversation_id)
        while history and history[-1]["role"] == "assistant":
            history.pop()
        if not history or history[-1]["role"] != "user":
            raise ReplyError("there is no user message to answer", code="nothing_to_regenerate")
        # Nothing to store before the reply: it becomes the question's active child when saved,
        # and until then (or if it fails) the old reply stays on screen.
        plan = self._plan(conversation_id, model, params, prompt_messages(conversation, history), lambda: None,
                          conversation)
        plan.reply_to = history[-1]["id"]
        return plan

    def plan_edit(self, conversation_id: int, message_id: int, content: str, model: ChatModel,
                  params: GenerationParams) -> ReplyPlan:
        if not content.strip():
            raise ReplyError("the message is empty", code="empty_message")
        conversation, history = self.store.history(conversation_id, through=message_id)
        edited = history[-1]
        if edited["role"] != "user":
            raise ReplyError("only user messages can be edited", code="not_a_user_message")
        history = [*history[:-1], {**edited, "id": None, "content": content}]

        def commit() -> dict[str, Any]:
            saved = self._stored(content)
            return self.store.add_message(conversation_id, "user", saved, parent_id=edited["parent_id"],
                                          tokens=model.count_tokens(saved))

        return self._plan(conversation_id, model, params, prompt_messages(conversation, history), commit, conversation)

    def current_context(self, conversation_id: int, model: ChatModel, params: GenerationParams) -> dict[str, Any]:
        """The meter for a conversation as it stands (what the next reply would see)."""
        conversation, history = self.store.history(conversation_id)
        messages = prompt_messages(conversation, history)
        if not messages:
            return {"used_tokens": 0, "window": model.window, "reserved_tokens": params.max_tokens,
                    "dropped_messages": [], "exact": model.exact_tokens}
        try:
            return context_report(model, fit_reply(model, params, messages), params.max_tokens)
        except ReplyError as e:
            if e.code != "context_length_exceeded":
                raise
            # Even the newest turn alone does not fit (a long reply): the window is full, and
            # everything before that turn is out of it.
            last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=0)
            return {"used_tokens": model.window, "window": model.window, "reserved_tokens": params.max_tokens,
                    "dropped_messages": [m["id"] for m in messages[:last_user] if m["id"] is not None],
                    "exact": model.exact_tokens, "overflow": True}

    # ---------------------------------------------------------------- running

    async def run(self, plan: ReplyPlan, stream: ReplyStream, user_message: dict[str, Any] | None,
                  is_stopped: Callable[[], bool] = lambda: False) -> AsyncIterator[dict[str, Any]]:
        """Stream the reply's events; the reply is saved however the stream ends."""
        pieces: list[str] = []
        thoughts: list[str] = []
        saved: dict[str, Any] | None = None
        ended = False  # done or error was reported

        # The reply follows the message it answers, wherever the active path went meanwhile.
        reply_to = user_message["id"] if user_message is not None else plan.reply_to

        def save(finish_reason: str) -> dict[str, Any] | None:
            nonlocal saved
            if saved is None:
                try:
                    saved = self.store.add_message(
                        plan.conversation_id, "assistant", self._stored("".join(pieces)),
                        parent_id=At.END if reply_to is None else reply_to, model=plan.model.name,
                        reasoning=self._stored("".join(thoughts)) or None,
                        tokens=stream.completion_tokens, prompt_tokens=plan.fitted.used,
                        completion_tokens=stream.completion_tokens, finish_reason=finish_reason,
                        sources=plan.sources)
                except NotFoundError:  # the conversation was deleted while it was answered
                    log.info("conversation %s is gone; reply not saved", plan.conversation_id)
            return saved

        try:
            yield {"type": "start", "user_message": user_message, "context": plan.context, "model": plan.model.name}
            async for piece in stream:
                if isinstance(piece, Reasoning):
                    if piece.text:
                        thoughts.append(piece.text)
                        yield {"type": "reasoning", "text": piece.text}
                elif piece:
                    pieces.append(piece)
                    yield {"type": "delta", "text": piece}
            finish = stream.finish_reason or "stop"
            if (is_stopped() and not isinstance(stream, CannedReply)) or finish == "abort":
                finish = "stopped"
            message = save(finish)
            ended = True
            used = plan.fitted.used + stream.completion_tokens
            yield {"type": "done", "message": message, "context": {**plan.context, "used_tokens": used}}
        except Exception as e:  # the model failed mid-way: keep what came, tell the client
            log.warning("reply in conversation %s failed: %s: %s", plan.conversation_id, type(e).__name__, e)
            message = save("error") if pieces or thoughts else None
            ended = True
            yield {"type": "error", "message": message, "error": error_body(e)}
        finally:
            stream.cancel()  # a no-op once it ended; frees the model's slot if we left early
            if not ended:  # the client left or the server is stopping (CancelledError / GeneratorExit)
                save("stopped")


def error_body(e: Exception) -> dict[str, Any]:
    """The API's error shape for an exception that ends a stream."""
    status = getattr(e, "status_code", 500)
    message = getattr(e, "message", None) or str(e) or type(e).__name__
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"message": message, "type": kind, "code": getattr(e, "code", None) or type(e).__name__}
