"""The serving layer: between the thin FastAPI routes and the backends.

`serve_chat` and `serve_completion` take a validated request, open the model's generation stream
(generation.py: the same for a local engine and a remote server) and answer it as OpenAI does:
one JSON body, or server-sent events (`data: {chunk}` ... `data: [DONE]`). Here, once for every
backend: the request's log record and metrics (tokens, time to first token, in-flight gauge), the
`usage` block, the client that disconnects (its stream is cancelled, its slot freed) and errors
after the stream started (one error event, then [DONE]).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from aigc.server.backends import ModelBackends
from aigc.server.errors import APIError
from aigc.server.generation import ChoiceDelta, GenerationStream, GenerativeBackend
from aigc.server.request_log import RequestRecord, request_record
from aigc.server.schemas import (
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatLogprobs,
    ChatMessageOut,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    SamplingRequest,
    Usage,
)
from aigc.server.sse import EventStreamResponse, sse_data, unless_disconnected


def begin(request: Request, endpoint: str, model: str, *, embeddings: bool = False) -> tuple[RequestRecord, Any]:
    """What every model route does first: its log record and the model's backend (a generative
    one, or with `embeddings` one that embeds)."""
    record = request_record(request)
    record.endpoint = endpoint
    backends: ModelBackends = request.app.state.backends
    # 404 unknown, 503 loading, 400 a model for another route
    backend = backends.embedder(model) if embeddings else backends.generative(model)
    record.model = backend.name
    return record, backend


@dataclass
class Generation:
    """A started generation, counted in the log and metrics until `release()`."""

    stream: GenerationStream
    record: RequestRecord
    release: Callable[[], None]
    reasoning_tokens: int = 0  # completion tokens spent thinking, so far

    async def deltas(self) -> AsyncIterator[ChoiceDelta]:
        """The stream's deltas; token arrivals noted for time-to-first-token and throughput."""
        async for delta in self.stream:
            if delta.tokens:
                self.record.tokens_arrived(delta.index, delta.tokens)
            self.reasoning_tokens += delta.reasoning_tokens
            yield delta
        self.count()

    def count(self) -> None:
        s, r = self.stream, self.record
        r.prompt_tokens = s.prompt_tokens or r.prompt_tokens
        r.completion_tokens, r.cached_tokens = s.completion_tokens, s.cached_tokens

    def usage(self) -> Usage:
        self.count()
        return Usage.of(self.record.prompt_tokens, self.record.completion_tokens, self.record.cached_tokens)


async def start(request: Request, record: RequestRecord, backend: GenerativeBackend,
                opening: Awaitable[GenerationStream]) -> Generation:
    """Open a backend's stream (a remote answers its status first: a disconnect meanwhile is a 499)."""
    stream = await unless_disconnected(request, opening, record)
    record.prompt_tokens = stream.prompt_tokens
    gauge = request.app.state.metrics.in_flight.labels(backend.name)
    gauge.inc()
    done = False

    def release() -> None:
        nonlocal done
        if not done:
            done = True
            stream.cancel()  # a no-op for a stream that ended
            gauge.dec()

    return Generation(stream, record, release)


async def collect(request: Request, gen: Generation,
                  consume: Callable[[AsyncIterator[ChoiceDelta]], Awaitable[Any]]) -> Any:
    """Run `consume` over the whole stream (a non-streamed answer); a client gone cancels it."""
    try:
        return await unless_disconnected(request, consume(gen.deltas()), gen.record)
    finally:
        gen.release()


def chunk_bytes(body: dict) -> bytes:
    return sse_data(json.dumps(body, ensure_ascii=False, separators=(",", ":")))


async def guarded_events(events: AsyncIterator[bytes], record: RequestRecord) -> AsyncIterator[bytes]:
    """Errors after the stream started become one error event (the openai client raises it), then [DONE]."""
    try:
        async for chunk in events:
            yield chunk
    except APIError as error:
        record.error, record.error_code = error.message, error.code or error.type
        yield chunk_bytes(error.body())
    except Exception as e:
        record.error, record.error_code = f"{type(e).__name__}: {e}", "internal_error"
        yield chunk_bytes(APIError(500, "Internal error while generating.", code="internal_error").body())
    yield b"data: [DONE]\n\n"


def _check_stream_options(req: SamplingRequest) -> None:
    if req.stream_options is not None and not req.stream:
        raise APIError(400, "stream_options is only allowed when stream is true.", param="stream_options")


@dataclass
class ChoiceOutput:
    """One choice's output so far (a non-streamed answer)."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    logprobs: list[Any] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None

    def add(self, d: ChoiceDelta) -> None:
        self.text.append(d.text)
        self.reasoning.append(d.reasoning)
        for fragment in d.tool_calls or []:
            call = self.calls.setdefault(int(fragment.get("index") or 0),
                                         {"id": None, "type": "function", "function": {"name": None, "arguments": ""}})
            call["id"] = fragment.get("id") or call["id"]
            function = fragment.get("function") or {}
            call["function"]["name"] = function.get("name") or call["function"]["name"]
            call["function"]["arguments"] += function.get("arguments") or ""
        for key, value in (d.extra or {}).items():
            if isinstance(value, str):
                self.extra[key] = self.extra.get(key, "") + value
        if d.logprobs:
            self.logprobs.append(d.logprobs)
        if d.finish_reason is not None:
            self.finish_reason, self.stop_reason = d.finish_reason, d.stop_reason

    def tool_calls(self) -> list[dict[str, Any]]:
        return [self.calls[i] for i in sorted(self.calls)]

    def content(self) -> str | None:
        """The text; with tool calls, without surrounding blanks, and None if nothing is left."""
        text = "".join(self.text)
        return (text.strip() or None) if self.calls else text

    def reasoning_content(self) -> str | None:
        return "".join(self.reasoning) or None


async def _gather(deltas: AsyncIterator[ChoiceDelta], choices: list[ChoiceOutput]) -> None:
    async for d in deltas:
        while d.index >= len(choices):  # a remote may send more choices than announced
            choices.append(ChoiceOutput())
        choices[d.index].add(d)


# ---------------------------------------------------------------------------- chat


async def serve_chat(request: Request, req: ChatCompletionRequest) -> Response:
    _check_stream_options(req)
    record, backend = begin(request, "/v1/chat/completions", req.model)
    rid, created = f"chatcmpl-{record.id}", int(time.time())
    gen = await start(request, record, backend, backend.chat(req, rid))
    if req.stream:
        return EventStreamResponse(guarded_events(_chat_events(req, gen, rid, created, backend.name), record),
                                   record, on_close=gen.release)

    choices = [ChoiceOutput() for _ in range(gen.stream.choices)]
    await collect(request, gen, lambda deltas: _gather(deltas, choices))
    out = []
    for k, c in enumerate(choices):
        message = ChatMessageOut(content=c.content(), reasoning_content=c.reasoning_content(),
                                 tool_calls=c.tool_calls() or None, **c.extra)
        out.append(ChatChoice(index=k, message=message, finish_reason=c.finish_reason, stop_reason=c.stop_reason,
                              logprobs=ChatLogprobs(content=[t for part in c.logprobs for t in part])
                              if req.logprobs else None))
    body = ChatCompletionResponse(id=rid, created=created, model=backend.name, choices=out, usage=gen.usage())
    return JSONResponse(body.model_dump(exclude_none=False))


async def _chat_events(req: ChatCompletionRequest, gen: Generation, rid: str, created: int,
                       model: str) -> AsyncIterator[bytes]:
    head: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
    if req.include_usage:
        head["usage"] = None

    def chunk(index: int, delta: dict[str, Any], logprobs: Any = None, finish: str | None = None) -> bytes:
        return chunk_bytes({**head, "choices": [
            {"index": index, "delta": delta, "logprobs": {"content": logprobs} if logprobs else None,
             "finish_reason": finish}]})

    for index in range(gen.stream.choices):
        yield chunk(index, {"role": "assistant", "content": ""})
    async for d in gen.deltas():
        delta: dict[str, Any] = {}
        if d.reasoning:
            delta["reasoning_content"] = d.reasoning
        if d.text:
            delta["content"] = d.text
        if d.tool_calls:
            delta["tool_calls"] = d.tool_calls
        if d.extra:
            delta.update(d.extra)
        if delta or d.logprobs or d.finish_reason is not None:
            yield chunk(d.index, delta, d.logprobs if req.logprobs else None, d.finish_reason)
    usage = gen.usage()  # also fills the request log's counts
    if req.include_usage:
        yield chunk_bytes({**head, "choices": [], "usage": usage.model_dump()})


# ---------------------------------------------------------------------------- completions


def _merge_completion_logprobs(parts: list[dict[str, Any]]) -> CompletionLogprobs:
    out = CompletionLogprobs()
    for part in parts:
        for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
            getattr(out, key).extend(part.get(key) or [])
    return out


async def serve_completion(request: Request, req: CompletionRequest) -> Response:
    _check_stream_options(req)
    record, backend = begin(request, "/v1/completions", req.model)
    rid, created = f"cmpl-{record.id}", int(time.time())
    gen = await start(request, record, backend, backend.complete(req, rid))
    if req.stream:
        return EventStreamResponse(guarded_events(_completion_events(req, gen, rid, created, backend.name), record),
                                   record, on_close=gen.release)

    choices = [ChoiceOutput() for _ in range(gen.stream.choices)]
    await collect(request, gen, lambda deltas: _gather(deltas, choices))
    out = [CompletionChoice(index=k, text="".join(c.text), finish_reason=c.finish_reason, stop_reason=c.stop_reason,
                            logprobs=_merge_completion_logprobs(c.logprobs) if req.logprobs is not None else None)
           for k, c in enumerate(choices)]
    body = CompletionResponse(id=rid, created=created, model=backend.name, choices=out, usage=gen.usage())
    return JSONResponse(body.model_dump())


async def _completion_events(req: CompletionRequest, gen: Generation, rid: str, created: int,
                             model: str) -> AsyncIterator[bytes]:
    head: dict[str, Any] = {"id": rid, "object": "text_completion", "created": created, "model": model}
    if req.include_usage:
        head["usage"] = None
    async for d in gen.deltas():
        if d.text or d.finish_reason is not None or d.logprobs:
            yield chunk_bytes({**head, "choices": [{
                "index": d.index, "text": d.text, "finish_reason": d.finish_reason, "stop_reason": d.stop_reason,
                "logprobs": d.logprobs if req.logprobs is not None and d.logprobs else None}]})
    usage = gen.usage()
    if req.include_usage:
        yield chunk_bytes({**head, "choices": [], "usage": usage.model_dump()})
