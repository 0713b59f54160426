"""The OpenAI API routes: /v1/models, /v1/completions, /v1/chat/completions, /tokenize, /detokenize.

Each generation request is validated (prompts.py), handed to the model's backend (a local engine,
or a remote server through remote.py), and answered either as one JSON body or as server-sent
events (`data: {chunk}` ... `data: [DONE]`). A client that disconnects cancels its engine streams.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from aigc.engine.protocol import CompletionDelta, EngineError, EngineRequest, RequestStream
from aigc.generation.params import SamplingParams
from aigc.server import prompts
from aigc.server.backends import ClassifierBackend, LocalBackend, ModelBackends
from aigc.server.errors import APIError, from_engine_error
from aigc.server.logprobs import CompletionLogprobsBuilder, chat_logprobs
from aigc.server.remote import RemoteBackend
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
    DetokenizeRequest,
    ModelCard,
    ModelList,
    TokenizeRequest,
    Usage,
)
from aigc.server.sse import EventStreamResponse, sse_data, unless_disconnected
from aigc.server.stream_merge import merge_streams
from aigc.server.tools import ToolStream, parse_tool_calls

router = APIRouter()


def _backends(request: Request) -> ModelBackends:
    return request.app.state.backends


def _resolve(request: Request, model: str, record: RequestRecord) -> LocalBackend | RemoteBackend:
    backend = _backends(request).generative(model)
    record.model = backend.name
    return backend


def begin(request: Request, endpoint: str, model: str) -> tuple[RequestRecord, LocalBackend | RemoteBackend]:
    """What every model route does first: its log record and the model's (generative) backend."""
    record = request_record(request)
    record.endpoint = endpoint
    return record, _resolve(request, model, record)


def _begin(request: Request, req: CompletionRequest | ChatCompletionRequest,
           endpoint: str) -> tuple[RequestRecord, LocalBackend | RemoteBackend]:
    """What every generation request does first: log record, shared checks, the model's backend."""
    if req.stream_options is not None and not req.stream:
        raise APIError(400, "stream_options is only allowed when stream is true.", param="stream_options")
    return begin(request, endpoint, req.model)


# ---------------------------------------------------------------------------- models


def _card(backend: LocalBackend | RemoteBackend | ClassifierBackend) -> ModelCard:
    if isinstance(backend, ClassifierBackend):
        return ModelCard(id=backend.name, created=backend.created, owned_by="aigc-classifier")
    if isinstance(backend, LocalBackend):
        return ModelCard(id=backend.name, created=backend.created, max_model_len=backend.max_context)
    return ModelCard(id=backend.name, created=backend.created, owned_by="remote")


@router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    return ModelList(data=[_card(b) for b in _backends(request).all()])


@router.get("/v1/models/{model:path}")
async def get_model(model: str, request: Request) -> ModelCard:
    return _card(_backends(request).get(model))


# ---------------------------------------------------------------------------- running requests


@dataclass
class _Choice:
    """One choice's output so far."""

    text: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    chat_logprobs: list = field(default_factory=list)
    completion_logprobs: CompletionLogprobs | None = None


def _submit(backend: LocalBackend, prompts_ids: list[list[int]], params: SamplingParams, rid: str) -> list[RequestStream]:
    streams: list[RequestStream] = []
    try:
        for i, ids in enumerate(prompts_ids):
            req_id = rid if len(prompts_ids) == 1 else f"{rid}-{i}"
            streams.append(backend.engine.submit(EngineRequest(ids, params, request_id=req_id)))
    except (EngineError, ValueError) as e:
        for s in streams:  # a batch is all or nothing
            s.cancel()
        if isinstance(e, EngineError):
            raise from_engine_error(e) from None
        # The engine's InvalidParameterError / ContextLengthError: the client's request is at fault.
        raise APIError(400, str(e), param=getattr(e, "param", None), code="invalid_value") from None
    return streams


def _in_flight(request: Request, model: str, streams: list[RequestStream]) -> Callable[[], None]:
    """Count the request as in flight; the returned function (idempotent) ends it and frees its streams."""
    gauge = request.app.state.metrics.in_flight.labels(model)
    gauge.inc()
    done = False

    def release() -> None:
        nonlocal done
        if not done:
            done = True
            for s in streams:
                s.cancel()  # a no-op for a stream that ended
            gauge.dec()

    return release


def _count(record: RequestRecord, index: int, delta: CompletionDelta, choice: _Choice) -> None:
    record.completion_tokens += len(delta.token_ids)
    record.tokens_arrived(index, len(delta.token_ids))
    if delta.finish_reason is not None:
        choice.finish_reason = delta.finish_reason
        choice.stop_reason = delta.stop_reason


def _usage(record: RequestRecord, streams: list[RequestStream]) -> Usage:
    record.cached_tokens = sum(s.metrics.cached_prompt_tokens for s in streams)
    return Usage.of(record.prompt_tokens, record.completion_tokens, record.cached_tokens)


def _chunk_json(body: dict) -> bytes:
    return sse_data(json.dumps(body, ensure_ascii=False, separators=(",", ":")))


async def _guarded_events(events: AsyncIterator[bytes], record: RequestRecord) -> AsyncIterator[bytes]:
    """Errors after the stream started become one error event (the openai client raises it), then [DONE]."""
    try:
        async for chunk in events:
            yield chunk
    except (EngineError, APIError) as e:
        error = from_engine_error(e) if isinstance(e, EngineError) else e
        record.error = error.message
        yield _chunk_json(error.body())
    except Exception as e:
        record.error = f"{type(e).__name__}: {e}"
        yield _chunk_json(APIError(500, "Internal error while generating.", code="internal_error").body())
    yield b"data: [DONE]\n\n"


# ---------------------------------------------------------------------------- /v1/completions


@router.post("/v1/completions", response_model=None)
async def completions(req: CompletionRequest, request: Request) -> Response:
    record, backend = _begin(request, req, "/v1/completions")
    if isinstance(backend, RemoteBackend):
        return await backend.forward(request, "completions", req.model_dump(exclude_unset=True), record)

    ids = prompts.completion_prompts(req, backend)
    params = prompts.completion_params(req, backend, ids)
    record.prompt_tokens = sum(len(p) for p in ids)
    rid, created, n = f"cmpl-{record.id}", int(time.time()), req.n
    echoes = [(p if isinstance(p, str) else backend.tokenizer.decode(i)) if req.echo else ""
              for p, i in zip(_prompt_texts(req, len(ids)), ids, strict=True)]
    choices = [_Choice() for _ in range(len(ids) * n)]
    offsets = [CompletionLogprobsBuilder(len(echoes[k // n])) for k in range(len(choices))]
    streams = _submit(backend, ids, params, rid)
    release = _in_flight(request, backend.name, streams)

    def choice_dict(k: int, text: str, delta: CompletionDelta | None) -> dict:
        logprobs = None
        if req.logprobs is not None and delta is not None and delta.logprobs:
            logprobs = offsets[k].add(delta.logprobs).model_dump()
        finish = delta.finish_reason if delta is not None else None
        return {"index": k, "text": text, "logprobs": logprobs, "finish_reason": finish,
                "stop_reason": delta.stop_reason if delta is not None else None}

    if req.stream:
        async def events() -> AsyncIterator[bytes]:
            head = {"id": rid, "object": "text_completion", "created": created, "model": backend.name}
            if req.include_usage:
                head["usage"] = None
            for k in range(len(choices)):
                if echoes[k // n]:
                    yield _chunk_json({**head, "choices": [choice_dict(k, echoes[k // n], None)]})
            async for i, delta in merge_streams(streams):
                k = i * n + delta.index
                _count(record, k, delta, choices[k])
                if delta.text or delta.finish_reason or delta.logprobs:
                    yield _chunk_json({**head, "choices": [choice_dict(k, delta.text, delta)]})
            usage = _usage(record, streams)  # also fills the request log's cached-token count
            if req.include_usage:
                yield _chunk_json({**head, "choices": [], "usage": usage.model_dump()})

        return EventStreamResponse(_guarded_events(events(), record), record, on_close=release)

    async def collect() -> None:
        async for i, delta in merge_streams(streams):
            k = i * n + delta.index
            c = choices[k]
            _count(record, k, delta, c)
            c.text.append(delta.text)
            if req.logprobs is not None and delta.logprobs:
                c.completion_logprobs = offsets[k].add(delta.logprobs, c.completion_logprobs)

    try:
        await unless_disconnected(request, _engine_errors(collect()), record)
    finally:
        release()
    out = [
        CompletionChoice(index=k, text=echoes[k // n] + "".join(c.text), finish_reason=c.finish_reason,
                         stop_reason=c.stop_reason,
                         logprobs=(c.completion_logprobs or CompletionLogprobs()) if req.logprobs is not None else None)
        for k, c in enumerate(choices)
    ]
    body = CompletionResponse(id=rid, created=created, model=backend.name, choices=out, usage=_usage(record, streams))
    return JSONResponse(body.model_dump())


def _prompt_texts(req: CompletionRequest, count: int) -> list[str | None]:
    if isinstance(req.prompt, str):
        return [req.prompt]
    if req.prompt and all(isinstance(p, str) for p in req.prompt):
        return list(req.prompt)  # type: ignore[arg-type]
    return [None] * count


async def _engine_errors(work):
    try:
        return await work
    except EngineError as e:
        raise from_engine_error(e) from None


# ---------------------------------------------------------------------------- /v1/chat/completions


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(req: ChatCompletionRequest, request: Request) -> Response:
    record, backend = _begin(request, req, "/v1/chat/completions")
    if isinstance(backend, RemoteBackend):
        return await backend.forward(request, "chat/completions", req.model_dump(exclude_unset=True), record)

    spec = prompts.chat_tools(req)
    ids = prompts.chat_prompt(req, backend, spec)
    params = prompts.chat_params(req, backend, ids, spec)
    record.prompt_tokens = len(ids)
    rid, created, n = f"chatcmpl-{record.id}", int(time.time()), req.n
    choices = [_Choice() for _ in range(n)]
    streams = _submit(backend, [ids], params, rid)
    release = _in_flight(request, backend.name, streams)

    if req.stream:
        head = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": backend.name}
        if req.include_usage:
            head["usage"] = None

        def chunk(index: int, delta: dict, logprobs: dict | None = None, finish: str | None = None) -> bytes:
            return _chunk_json({**head, "choices": [
                {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]})

        parsers = [ToolStream(spec) for _ in range(n)] if spec is not None and spec.parses else None

        def tool_events(index: int, events: list) -> list[bytes]:
            out = []
            for kind, value in events:
                if kind == "content":
                    out.append(chunk(index, {"content": value}))
                    continue
                k = value["index"]
                head_delta = {"index": k, "id": value["id"], "type": "function",
                              "function": {"name": value["function"]["name"], "arguments": ""}}
                out.append(chunk(index, {"tool_calls": [head_delta]}))
                out.append(chunk(index, {"tool_calls": [{"index": k, "function": {
                    "arguments": value["function"]["arguments"]}}]}))
            return out

        async def events() -> AsyncIterator[bytes]:
            for index in range(n):
                yield chunk(index, {"role": "assistant", "content": ""})
            async for _, delta in merge_streams(streams):
                _count(record, delta.index, delta, choices[delta.index])
                logprobs = None
                if req.logprobs and delta.logprobs:
                    logprobs = {"content": [t.model_dump() for t in chat_logprobs(delta.logprobs)]}
                if parsers is not None:
                    for body in tool_events(delta.index, parsers[delta.index].push(delta.text)):
                        yield body
                    if logprobs:
                        yield chunk(delta.index, {}, logprobs)
                elif delta.text or logprobs:
                    yield chunk(delta.index, {"content": delta.text}, logprobs)
                if delta.finish_reason is not None:
                    reason = delta.finish_reason
                    if parsers is not None:
                        for body in tool_events(delta.index, parsers[delta.index].finish()):
                            yield body
                        if parsers[delta.index].calls and reason == "stop":
                            reason = "tool_calls"
                    yield chunk(delta.index, {}, None, reason)
            usage = _usage(record, streams)  # also fills the request log's cached-token count
            if req.include_usage:
                yield _chunk_json({**head, "choices": [], "usage": usage.model_dump()})

        return EventStreamResponse(_guarded_events(events(), record), record, on_close=release)

    async def collect() -> None:
        async for _, delta in merge_streams(streams):
            c = choices[delta.index]
            _count(record, delta.index, delta, c)
            c.text.append(delta.text)
            if req.logprobs and delta.logprobs:
                c.chat_logprobs.extend(chat_logprobs(delta.logprobs))

    try:
        await unless_disconnected(request, _engine_errors(collect()), record)
    finally:
        release()
    out = []
    for k, c in enumerate(choices):
        message, reason = ChatMessageOut(content="".join(c.text)), c.finish_reason
        if spec is not None and spec.parses:
            content, calls = parse_tool_calls(message.content, spec)
            if calls:
                message = ChatMessageOut(content=content, tool_calls=calls)
                reason = "tool_calls" if reason == "stop" else reason
        out.append(ChatChoice(index=k, message=message, finish_reason=reason, stop_reason=c.stop_reason,
                              logprobs=ChatLogprobs(content=c.chat_logprobs) if req.logprobs else None))
    body = ChatCompletionResponse(id=rid, created=created, model=backend.name, choices=out, usage=_usage(record, streams))
    return JSONResponse(body.model_dump())


# ---------------------------------------------------------------------------- tokenize


@router.post("/tokenize", response_model=None)
async def tokenize(req: TokenizeRequest, request: Request) -> Response:
    record = request_record(request)
    record.endpoint = "/tokenize"
    backend = _resolve(request, req.model, record)
    if isinstance(backend, RemoteBackend):
        return await backend.forward(request, "/tokenize", req.model_dump(exclude_unset=True), record)
    if (req.prompt is None) == (req.messages is None):
        raise APIError(400, "Send exactly one of 'prompt' or 'messages'.", param="prompt")
    if req.messages is not None:
        chat = ChatCompletionRequest(model=req.model, messages=req.messages,
                                     add_generation_prompt=req.add_generation_prompt)
        ids = prompts.chat_prompt(chat, backend, prompts.chat_tools(chat))
    else:
        ids = backend.tokenizer.encode(req.prompt or "", add_special_tokens=req.add_special_tokens)
    record.prompt_tokens = len(ids)
    return JSONResponse({"tokens": ids, "count": len(ids), "max_model_len": backend.max_context})


@router.post("/detokenize", response_model=None)
async def detokenize(req: DetokenizeRequest, request: Request) -> Response:
    record = request_record(request)
    record.endpoint = "/detokenize"
    backend = _resolve(request, req.model, record)
    if isinstance(backend, RemoteBackend):
        return await backend.forward(request, "/detokenize", req.model_dump(exclude_unset=True), record)
    vocab = backend.tokenizer.vocab_size
    bad = next((t for t in req.tokens if not 0 <= t < vocab), None)
    if bad is not None:
        raise APIError(400, f"token id {bad} is outside the vocabulary (size {vocab}).", param="tokens")
    return JSONResponse({"prompt": backend.tokenizer.decode(req.tokens)})
