"""The web app's view of the served models: each backend (local engine or remote server) as a ChatModel.

The app uses the same `ModelBackends` registry as the OpenAI routes, so every model `/v1/models`
lists -- loaded here or proxied with `--remote` -- can be picked in the UI. A local model counts
tokens with its own tokenizer and chat template (exact); a remote one is estimated (its tokenizer
is elsewhere) against this server's `max_context`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from aigc.apps.chat.context import FittedContext, fit_messages
from aigc.apps.chat.model import ApproxTokenizer, ChatModel, GenerationParams
from aigc.engine.protocol import EngineError, EngineRequest, RequestStream
from aigc.generation.guided import GuidedDecoding
from aigc.generation.params import SamplingParams
from aigc.server.backends import ClassifierBackend, LocalBackend, ModelBackends
from aigc.server.errors import APIError, from_engine_error
from aigc.server.remote import RemoteBackend


def sampling(params: GenerationParams) -> SamplingParams:
    guided = GuidedDecoding.json_schema(params.json_schema) if params.json_schema is not None else None
    return SamplingParams(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                          seed=params.seed, guided=guided)


class LocalReplyStream:
    def __init__(self, stream: RequestStream):
        self._stream = stream
        self.finish_reason: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0

    async def __aiter__(self) -> AsyncIterator[str]:
        async for delta in self._stream:
            self.completion_tokens += len(delta.token_ids)
            if delta.finish_reason is not None:
                self.finish_reason = delta.finish_reason
            yield delta.text

    def cancel(self) -> None:
        self._stream.cancel()


class LocalChatModel:
    exact_tokens = True

    def __init__(self, backend: LocalBackend):
        self.name = backend.name
        self.window = backend.max_context
        self._backend = backend

    def count_tokens(self, text: str) -> int:
        return len(self._backend.tokenizer.encode(text))

    def fit(self, messages: list[dict[str, Any]], budget: int) -> FittedContext:
        return fit_messages(self._backend.tokenizer, messages, budget)

    def stream(self, fitted: FittedContext, params: GenerationParams) -> LocalReplyStream:
        try:
            request = EngineRequest(list(fitted.prompt_ids), sampling(params).validate())
            stream = self._backend.engine.submit(request)
        except EngineError as e:
            raise from_engine_error(e) from None
        except ValueError as e:  # bad sampling values, context too long
            raise APIError(400, str(e), code="invalid_value") from None
        out = LocalReplyStream(stream)
        out.prompt_tokens = fitted.used
        return out


_END = object()


class RemoteReplyStream:
    """Reads the remote's SSE stream in a task (so `cancel()` can stop it at once) into a queue."""

    def __init__(self, backend: RemoteBackend, messages: list[dict[str, Any]], params: GenerationParams):
        self.finish_reason: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._queue: asyncio.Queue = asyncio.Queue()
        body: dict[str, Any] = {"model": backend.remote_model, "messages": messages, "stream": True,
                                "stream_options": {"include_usage": True}, "temperature": params.temperature,
                                "top_p": params.top_p, "max_tokens": params.max_tokens}
        if params.seed is not None:
            body["seed"] = params.seed
        if params.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": params.json_schema, "strict": True}}
        self._task = asyncio.get_running_loop().create_task(self._read(backend, body))

    async def _read(self, backend: RemoteBackend, body: dict[str, Any]) -> None:
        try:
            async with backend.client.stream("POST", backend.url("chat/completions"), json=body) as upstream:
                if upstream.status_code != 200:
                    text = (await upstream.aread()).decode("utf-8", "replace")
                    try:
                        message = json.loads(text)["error"]["message"]
                    except (ValueError, KeyError, TypeError):
                        message = text[:200]
                    raise APIError(502, f"remote model `{backend.name}`: {message}", code="remote_error")
                async for line in upstream.aiter_lines():
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    self._chunk(json.loads(line[5:]))
            self._queue.put_nowait(_END)
        except asyncio.CancelledError:
            self._queue.put_nowait(_END)
            raise
        except httpx.HTTPError as e:
            self._queue.put_nowait(APIError(503, f"remote model `{backend.name}` failed: {e}", code="remote_error"))
        except Exception as e:
            self._queue.put_nowait(e)

    def _chunk(self, chunk: dict[str, Any]) -> None:
        if isinstance(chunk.get("error"), dict):
            raise APIError(502, f"remote: {chunk['error'].get('message')}", code="remote_error")
        usage = chunk.get("usage")
        if usage:
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                self._queue.put_nowait(text)
                if not usage:
                    self.completion_tokens += 1  # about one token a chunk; the usage chunk corrects it
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    async def __aiter__(self) -> AsyncIterator[str]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def cancel(self) -> None:
        if not self._task.done():
            self._task.cancel()
            self.finish_reason = self.finish_reason or "abort"


class RemoteChatModel:
    exact_tokens = False

    def __init__(self, backend: RemoteBackend, window: int):
        self.name = backend.name
        self.window = window
        self._backend = backend
        self._counter = ApproxTokenizer()

    def count_tokens(self, text: str) -> int:
        return self._counter.count_tokens(text)

    def fit(self, messages: list[dict[str, Any]], budget: int) -> FittedContext:
        return fit_messages(self._counter, messages, budget)

    def stream(self, fitted: FittedContext, params: GenerationParams) -> RemoteReplyStream:
        messages = [{"role": m["role"], "content": m["content"]} for m in fitted.messages]
        out = RemoteReplyStream(self._backend, messages, params)
        out.prompt_tokens = fitted.used
        return out


def chat_model(backends: ModelBackends, name: str, remote_window: int) -> ChatModel:
    backend = backends.generative(name)  # 404 unknown, 503 loading, 400 a classifier
    if isinstance(backend, LocalBackend):
        return LocalChatModel(backend)
    return RemoteChatModel(backend, remote_window)


def pick_model_name(backends: ModelBackends, requested: str | None, *fallbacks: str | None) -> str:
    """The model asked for (404 if unknown), else the first fallback still served, else the first model."""
    if requested:
        return requested
    served = [b.name for b in backends.all() if not isinstance(b, ClassifierBackend)]
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
        if isinstance(b, ClassifierBackend):
            continue  # not a chat model
        local = isinstance(b, LocalBackend)
        out.append({"id": b.name, "window": b.max_context if local else remote_window,
                    "remote": not local, "ready": True})
    out += [{"id": name, "window": None, "remote": False, "ready": False} for name in backends.loading]
    return out

