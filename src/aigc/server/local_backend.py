"""A model served in this process: the engine behind the generation protocol (generation.py).

`chat()` and `complete()` turn the validated request into prompt token ids and `SamplingParams`
(prompts.py: every client mistake is a 400 naming its parameter), submit one engine request per
prompt, and return the engine streams as one `GenerationStream`. Each choice's engine deltas are
shaped here into the API's deltas: a reasoning model's `<think>` block split off into `reasoning`
(reasoning.py), then the model's tool-call markup in the rest parsed into `tool_calls` fragments,
log-probabilities in the endpoint's shape, echoed prompts first. Engine errors become
`APIError`s here, and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from aigc.engine.protocol import CompletionDelta, EngineError, EngineRequest, EngineStats, RequestStream
from aigc.generation.params import SamplingParams
from aigc.server import prompts
from aigc.server.embedding_inputs import embedding_body, embedding_inputs
from aigc.server.errors import APIError, bad_request, from_engine_error
from aigc.server.generation import ChoiceDelta
from aigc.server.logprobs import CompletionLogprobsBuilder, chat_logprobs
from aigc.server.reasoning import ReasoningParser, ReasoningStream, model_thinks, prompt_opens_reasoning
from aigc.server.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    ModelCard,
    TokenizeRequest,
)
from aigc.server.stream_merge import merge_streams
from aigc.server.tools import ToolSpec, ToolStream

if TYPE_CHECKING:
    from aigc.server.backends import EngineLike
    from aigc.tokenizer import Tokenizer

Shaper = Callable[[CompletionDelta], list[ChoiceDelta]]


@dataclass
class LocalBackend:
    """An in-process engine. `max_context`: tokens per sequence (prompt + completion) it serves.
    `reasoning_parser` (--reasoning-parser): whether chat output is split into reasoning and content."""

    name: str
    engine: EngineLike
    tokenizer: Tokenizer
    max_context: int
    created: int = field(default_factory=lambda: int(time.time()))
    reasoning_parser: ReasoningParser = "auto"
    thinks: bool = field(init=False)  # decided once: the templates and vocabulary do not change
    exact_tokens = True

    def __post_init__(self) -> None:
        self.thinks = model_thinks(self.tokenizer, self.reasoning_parser)

    def card(self) -> ModelCard:
        return ModelCard(id=self.name, created=self.created, max_model_len=self.max_context)

    def stats(self) -> EngineStats:
        return self.engine.stats()

    def close(self) -> None:
        self.engine.stop()

    async def chat(self, req: ChatCompletionRequest, request_id: str) -> EngineGeneration:
        def prepare():  # templating and tokenizing a long prompt takes a while: off the event loop
            spec = prompts.chat_tools(req)
            ids = prompts.chat_prompt(req, self, spec)
            return spec, ids, prompts.chat_params(req, self, ids, spec)

        spec, ids, params = await run_in_threadpool(prepare)
        # A prompt that ends in "<think>" starts the output inside the block -- unless decoding is
        # constrained (a forced tool call, a structured output): that output is the answer itself.
        opened = self.thinks and params.guided is None and prompt_opens_reasoning(self.tokenizer, ids)
        streams = self._submit([ids], params, request_id)
        shapers = [_chat_shaper(k, spec, bool(req.logprobs), ReasoningStream(opened) if self.thinks else None)
                   for k in range(req.n)]
        return EngineGeneration(streams, req.n, len(ids), shapers)

    async def complete(self, req: CompletionRequest, request_id: str) -> EngineGeneration:
        def prepare():
            ids = prompts.completion_prompts(req, self)
            return ids, prompts.completion_params(req, self, ids)

        ids, params = await run_in_threadpool(prepare)
        texts = prompts.prompt_texts(req, len(ids))
        echoes = [(t if t is not None else self.tokenizer.decode(p)) if req.echo else ""
                  for t, p in zip(texts, ids, strict=True)]
        streams = self._submit(ids, params, request_id)
        n = req.n
        count = len(ids) * n
        shapers = [_completion_shaper(k, len(echoes[k // n]), req.logprobs is not None) for k in range(count)]
        lead = [ChoiceDelta(k, echoes[k // n]) for k in range(count) if echoes[k // n]]
        return EngineGeneration(streams, n, sum(len(p) for p in ids), shapers, lead)

    # ---- non-generative routes ------------------------------------------------------------------

    async def embeddings(self, req: EmbeddingRequest) -> dict[str, Any]:
        size = self.engine.embedding_size
        ids = embedding_inputs(req, lambda t: self.tokenizer.encode(t, add_special_tokens=True),
                               self.tokenizer.vocab_size, self.max_context, size)
        vectors = await run_in_threadpool(self.engine.embed, ids, req.dimensions)
        return embedding_body(self.name, req, vectors, sum(len(t) for t in ids))

    async def tokenize(self, req: TokenizeRequest) -> dict[str, Any]:
        return await run_in_threadpool(self._tokenize, req)

    def _tokenize(self, req: TokenizeRequest) -> dict[str, Any]:
        if (req.prompt is None) == (req.messages is None):
            raise bad_request("Send exactly one of 'prompt' or 'messages'.", param="prompt")
        if req.messages is not None:
            chat = ChatCompletionRequest(model=req.model, messages=req.messages,
                                         add_generation_prompt=req.add_generation_prompt)
            ids = prompts.chat_prompt(chat, self, prompts.chat_tools(chat))
        else:
            ids = self.tokenizer.encode(req.prompt or "", add_special_tokens=req.add_special_tokens)
        return {"tokens": ids, "count": len(ids), "max_model_len": self.max_context}

    async def detokenize(self, req: DetokenizeRequest) -> dict[str, Any]:
        vocab = self.tokenizer.vocab_size
        bad = next((t for t in req.tokens if not 0 <= t < vocab), None)
        if bad is not None:
            raise bad_request(f"token id {bad} is outside the vocabulary (size {vocab}).", param="tokens")
        return {"prompt": self.tokenizer.decode(req.tokens)}

    def _submit(self, prompt_ids: list[list[int]], params: SamplingParams, rid: str) -> list[RequestStream]:
        streams: list[RequestStream] = []
        try:
            for i, ids in enumerate(prompt_ids):
                req_id = rid if len(prompt_ids) == 1 else f"{rid}-{i}"
                streams.append(self.engine.submit(EngineRequest(ids, params, request_id=req_id)))
        except (EngineError, ValueError) as e:
            for s in streams:  # a batch is all or nothing
                s.cancel()
            if isinstance(e, EngineError):
                raise from_engine_error(e) from None
            # The engine's InvalidParameterError / ContextLengthError: the client's request is at fault.
            raise APIError(400, str(e), param=getattr(e, "param", None), code="invalid_value") from None
        return streams


class EngineGeneration:
    """Engine streams (one per prompt, each with n choices) as one GenerationStream. Choice k of
    the response is choice k % n of prompt k // n."""

    def __init__(self, streams: Sequence[RequestStream], n: int, prompt_tokens: int, shapers: list[Shaper],
                 lead: list[ChoiceDelta] | None = None):
        self._streams = streams
        self._n = n
        self._shapers = shapers
        self._lead = lead or []
        self.choices = len(streams) * n
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.cached_tokens = 0

    async def __aiter__(self) -> AsyncIterator[ChoiceDelta]:
        for delta in self._lead:
            yield delta
        try:
            async for i, delta in merge_streams(self._streams):
                self.completion_tokens += len(delta.token_ids)
                for out in self._shapers[i * self._n + delta.index](delta):
                    yield out
        except EngineError as e:
            raise from_engine_error(e) from None
        finally:
            self.cached_tokens = sum(s.metrics.cached_prompt_tokens for s in self._streams)

    def cancel(self) -> None:
        for s in self._streams:
            s.cancel()  # a no-op for a stream that ended


def _with_tokens(out: list[ChoiceDelta], index: int, tokens: int, reasoning_tokens: int = 0) -> list[ChoiceDelta]:
    """Put the engine delta's token count on the first API delta it produced (or an empty one)."""
    if tokens:
        if not out:
            out.append(ChoiceDelta(index))
        out[0].tokens, out[0].reasoning_tokens = tokens, reasoning_tokens
    return out


def _chat_shaper(k: int, spec: ToolSpec | None, logprobs: bool, thinking: ReasoningStream | None) -> Shaper:
    """Engine deltas -> API deltas: the reasoning split off first (`thinking`, for a reasoning
    model), then the answer through the tool-call parser when calls are parsed."""
    parser = ToolStream(spec) if spec is not None and spec.parses else None

    def tool_deltas(events: list) -> list[ChoiceDelta]:
        out = []
        for kind, value in events:
            if kind == "content":
                if value:
                    out.append(ChoiceDelta(k, value))
                continue
            i = value["index"]  # a whole call: its head, then its arguments in one fragment
            out.append(ChoiceDelta(k, tool_calls=[{"index": i, "id": value["id"], "type": "function",
                                                  "function": {"name": value["function"]["name"], "arguments": ""}}]))
            out.append(ChoiceDelta(k, tool_calls=[{"index": i, "function": {
                "arguments": value["function"]["arguments"]}}]))
        return out

    def answer(text: str, final: bool) -> list[ChoiceDelta]:
        if parser is None:
            return [ChoiceDelta(k, text)] if text else []
        return tool_deltas((parser.push(text) if text else []) + (parser.finish() if final else []))

    def shape(d: CompletionDelta) -> list[ChoiceDelta]:
        lp = [t.model_dump() for t in chat_logprobs(d.logprobs)] if logprobs and d.logprobs else None
        final = d.finish_reason is not None
        reasoning, text, spent = "", d.text, 0
        if thinking is not None:
            was_thinking = thinking.in_reasoning
            reasoning, text = thinking.push(d.text)
            if final:
                more_reasoning, more_text = thinking.finish()
                reasoning, text = reasoning + more_reasoning, text + more_text
            # tokens inside the block, and those that open or close it, were spent thinking
            spent = len(d.token_ids) if was_thinking or thinking.in_reasoning else 0
        out = [ChoiceDelta(k, reasoning=reasoning)] if reasoning else []
        out += answer(text, final)
        if lp:
            if out and out[-1].tool_calls is None:
                out[-1].logprobs = lp
            else:
                out.append(ChoiceDelta(k, logprobs=lp))
        if final:
            reason = d.finish_reason
            if parser is not None and parser.calls and reason == "stop":
                reason = "tool_calls"
            out.append(ChoiceDelta(k, finish_reason=reason, stop_reason=d.stop_reason))
        return _with_tokens(out, k, len(d.token_ids), spent)

    return shape


def _completion_shaper(k: int, echo_len: int, logprobs: bool) -> Shaper:
    offsets = CompletionLogprobsBuilder(echo_len)  # text_offset counts the echoed prompt

    def shape(d: CompletionDelta) -> list[ChoiceDelta]:
        lp = offsets.add(d.logprobs).model_dump() if logprobs and d.logprobs else None
        out = []
        if d.text or lp or d.finish_reason is not None:
            out.append(ChoiceDelta(k, d.text, logprobs=lp, finish_reason=d.finish_reason, stop_reason=d.stop_reason))
        return _with_tokens(out, k, len(d.token_ids))

    return shape
