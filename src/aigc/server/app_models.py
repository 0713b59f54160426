"""The web app's view of the served models: each generative backend as a ChatModel.

The app uses the same `ModelBackends` registry as the OpenAI routes, and the same way to a model:
a reply is a `ChatCompletionRequest` run by the backend's `chat()` (generation.py), so every model
`/v1/models` lists -- loaded here or proxied with `--remote` -- can be picked in the UI, with the
same validation and errors. A local model counts tokens with its own tokenizer and chat template
(exact); a remote one is estimated (its tokenizer is elsewhere) against this server's `max_context`.

Each reply's tokens are counted in a `RequestRecord`, which `ServerMetrics.observe` turns into
/metrics and the dashboard's history: the HTTP request's own record for a reply a request streams
(chat, studio, arena), or, for work that outlives its request (an eval run in the background), a
record per reply, observed when that reply ends (`observe=`).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import ValidationError

from aigc.apps.chat.context import FittedContext, fit_messages
from aigc.apps.chat.model import ApproxTokenizer, ChatModel, GenerationParams, Reasoning
from aigc.server.backends import ModelBackends
from aigc.server.errors import APIError, from_validation_errors
from aigc.server.generation import GenerationStream, GenerativeBackend
from aigc.server.request_log import RequestRecord
from aigc.server.schemas import ChatCompletionRequest


def chat_request(name: str, messages: list[dict[str, Any]], params: GenerationParams) -> ChatCompletionRequest:
    """The app's reply as the chat request every backend takes (the OpenAI routes' request)."""
    body: dict[str, Any] = {"model": name, "messages": messages, "max_tokens": params.max_tokens,
                            "temperature": params.temperature, "top_p": params.top_p, "seed": params.seed}
    if params.json_schema is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "output", "schema": params.json_schema, "strict": True}}
    return ChatCompletionRequest(**body)


class BackendReplyStream:
    """A backend's generation stream as the app reads it: the text of the reply (choice 0), and
    the reasoning before it (local and remote models alike: both deltas carry `reasoning`). With
    the request's `record`, token arrivals and counts go to its log line and metrics, as the
    OpenAI routes' do (serving.py); `on_end` runs once the reply has ended and the record is complete."""

    def __init__(self, stream: GenerationStream, prompt_tokens: int, record: RequestRecord | None = None,
                 on_end: Callable[[], None] | None = None):
        self._stream = stream
        self._record = record
        self._on_end = on_end  # called once, when the reply has ended (its record is complete)
        self._iterated = False
        self.finish_reason: str | None = None
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0

    def _ended(self) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()

    async def __aiter__(self) -> AsyncIterator[str | Reasoning]:
        record = self._record
        self._iterated = True
        try:
            async for delta in self._stream:
                if record is not None and delta.tokens:
                    record.tokens_arrived(delta.index, delta.tokens)
                if delta.finish_reason is not None:
                    self.finish_reason = delta.finish_reason
                if delta.reasoning:
                    yield Reasoning(delta.reasoning)
                if delta.text:
                    yield delta.text
        except Exception as e:
            if record is not None and self._on_end is not None:  # a record of its own (an HTTP one: the route's)
                record.error = record.error or f"{type(e).__name__}: {e}"
                record.error_code = record.error_code or getattr(e, "code", None) or "internal_error"
            raise
        finally:
            self.completion_tokens = self._stream.completion_tokens
            self.prompt_tokens = self._stream.prompt_tokens or self.prompt_tokens
            if record is not None:
                record.prompt_tokens, record.completion_tokens = self.prompt_tokens, self.completion_tokens
                record.cached_tokens = self._stream.cached_tokens
            self._ended()

    def cancel(self) -> None:
        self._stream.cancel()
        self.finish_reason = self.finish_reason or "abort"
        if not self._iterated:  # never read: it ends here (once read, the loop's end counts it)
            self._ended()


Observe = Callable[[RequestRecord], None]  # ServerMetrics.observe: a finished record into the metrics


class BackendChatModel:
    """Any generative backend as the app's ChatModel. A local model counts tokens with its own
    tokenizer and chat template (exact); a remote one is estimated against `window`.

    Tokens are counted into `record` (the HTTP request being answered), or with `observe` and no
    record, into a record of each reply's own under `endpoint`, handed to `observe` as it ends (a
    refused start too, with its status), as the request log does for a request."""

    def __init__(self, backend: GenerativeBackend, window: int, record: RequestRecord | None = None, *,
                 observe: Observe | None = None, endpoint: str = ""):
        self.name = backend.name
        self._record = record  # the request this model answers (its tokens are counted there)
        self._observe = observe
        self._endpoint = endpoint
        self.exact_tokens = backend.exact_tokens
        self.window = backend.max_context or window
        self._backend = backend
        self._counter = getattr(backend, "tokenizer", None) if backend.exact_tokens else None
        if self._counter is None:
            self._counter = ApproxTokenizer()
            self.exact_tokens = False

    def count_tokens(self, text: str) -> int:
        if isinstance(self._counter, ApproxTokenizer):
            return self._counter.count_tokens(text)
        return len(self._counter.encode(text))

    def fit(self, messages: list[dict[str, Any]], budget: int) -> FittedContext:
        return fit_messages(self._counter, messages, budget)

    async def stream(self, fitted: FittedContext, params: GenerationParams) -> BackendReplyStream:
        messages = [{"role": m["role"], "content": m["content"]} for m in fitted.messages]
        try:
            req = chat_request(self.name, messages, params)
        except ValidationError as e:
            raise from_validation_errors(e.errors()) from None
        record, on_end = self._record, None
        if record is None and self._observe is not None:
            record, on_end = self._reply_record()
        try:
            stream = await self._backend.chat(req, f"app-{secrets.token_hex(8)}")
        except Exception as e:
            if on_end is not None:  # refused (a full queue's 429, bad parameters): counted as the API would
                record.status = getattr(e, "status_code", 500)
                record.error = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
                record.error_code = getattr(e, "code", None) or getattr(e, "type", None) or "internal_error"
                on_end()
            raise
        if on_end is not None:
            record.status, record.prompt_tokens = 200, stream.prompt_tokens or fitted.used
        return BackendReplyStream(stream, fitted.used, record, on_end)

    def _reply_record(self) -> tuple[RequestRecord, Callable[[], None]]:
        """A record for one reply that is no HTTP request's, and what ends it (into `observe`)."""
        record = RequestRecord(uuid.uuid4().hex, "POST", self._endpoint, endpoint=self._endpoint, model=self.name)
        observe = self._observe
        assert observe is not None

        def end() -> None:
            record.total_s = time.perf_counter() - record.start
            observe(record)

        return record, end


def chat_model(backends: ModelBackends, name: str, remote_window: int, record: RequestRecord | None = None, *,
               observe: Observe | None = None, endpoint: str = "") -> ChatModel:
    # 404 unknown, 503 loading, 400 classifier
    return BackendChatModel(backends.generative(name), remote_window, record, observe=observe, endpoint=endpoint)


def pick_model_name(backends: ModelBackends, requested: str | None, *fallbacks: str | None) -> str:
    """The model asked for (404 if unknown), else the first fallback still served, else the first model."""
    if requested:
        return requested
    served = backends.generative_names()
    for name in fallbacks:
        if name and name in served:
            return name
    if served:
        return served[0]
    if backends.loading:
        raise APIError(503, f"Loading models: {', '.join(backends.loading)}; retry shortly.", code="model_loading",
                       headers={"Retry-After": "5"})
    raise APIError(503, "This server serves no model.", code="no_model")


def model_cards(backends: ModelBackends, remote_window: int) -> list[dict[str, Any]]:
    out = []
    for b in backends.all():
        if not hasattr(b, "chat"):
            continue  # a classifier or an embedding model: not a chat model
        out.append({"id": b.name, "window": b.max_context or remote_window, "remote": not b.exact_tokens,
                    "ready": True})
    out += [{"id": name, "window": None, "remote": False, "ready": False} for name in backends.loading]
    return out

