"""The engine core driven offline: `generate()` (a batch of prompts in, completions out) and
`stream_generate()` (one prompt, one event per token).

`aigc generate`, `aigc chat`, evaluation and pretraining samples use these; they run the same
`EngineCore` as `aigc serve` (the threaded `Engine`), so a seeded request gives the same samples on
the command line, in a script and over HTTP. Each prompt gets its own KV slot(s): no padding.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from aigc.engine.core import EngineCore, slots_wanted
from aigc.engine.protocol import CompletionDelta, EngineRequest, RequestMetrics, TokenLogprob
from aigc.generation.params import InvalidParameterError, SamplingParams
from aigc.generation.prefill import check_prompts
from aigc.generation.sampler import TokenLogprobs
from aigc.models.transformer import Transformer


@dataclass
class Completion:
    token_ids: list[int]  # generated ids, including a final eos/stop token (whose text is never emitted)
    text: str | None  # None when no tokenizer was given; cut before a stop string
    finish_reason: str  # "stop" (stop token or stop string) | "length" (max_tokens or context end)
    stop_reason: str | int | None  # the stop string or stop token id that ended it
    cumulative_logprob: float  # sum of the chosen tokens' raw logprobs (beam search: processed logprobs)
    logprobs: list[TokenLogprobs] | None = None  # per token, when params.logprobs is set
    score: float | None = None  # beam search: cumulative logprob / length ** length_penalty


@dataclass
class StreamEvent:
    text_delta: str
    token_id: int
    logprobs: TokenLogprobs | None
    finish_reason: str | None  # set on the last event


class _Sink:
    """What a request's deltas go to when nobody waits on another thread: a list, drained per step."""

    def __init__(self, request_id: str, n: int):
        self.request_id = request_id
        self.metrics = RequestMetrics()
        self.finish_reasons: list[str | None] = [None] * n
        self.cancelled = False
        self.items: list[CompletionDelta | BaseException] = []
        self.ended = False

    def deliver(self, items, end: bool = False) -> bool:
        self.items.extend(items)
        self.ended = self.ended or end
        return True

    def take(self) -> list[CompletionDelta]:
        items, self.items = self.items, []
        for item in items:
            if isinstance(item, BaseException):
                raise item
        return items


def _check(model: Transformer, prompts: list[list[int]], params: SamplingParams, tokenizer: Any) -> None:
    params.validate(model.config.vocab_size)
    check_prompts(model, prompts)
    if params.stop and tokenizer is None:
        raise InvalidParameterError("stop strings need a tokenizer (pass tokenizer=...)")


def _eos(model: Transformer, tokenizer: Any, eos_token_ids) -> list[int]:
    if eos_token_ids is not None:
        return sorted(set(eos_token_ids))
    ids = set(model.config.eos_token_ids)
    if tokenizer is not None:
        ids |= set(tokenizer.eos_token_ids)
    return sorted(ids)


def _core(model: Transformer, tokenizer: Any, prompts: list[list[int]], params: SamplingParams,
          prefill_chunk: int) -> EngineCore:
    window = model.config.context_length
    longest = max(len(p) for p in prompts)
    need = window if params.max_tokens is None else min(window, longest + params.max_tokens)
    return EngineCore(model.eval(), tokenizer, max_concurrency=len(prompts) * slots_wanted(params),
                      max_context=max(need, longest + 1), prefill_chunk=prefill_chunk)


_ids = itertools.count()


def _to_sampler_logprobs(lps: list[TokenLogprob] | None) -> list[TokenLogprobs] | None:
    if lps is None:
        return None
    return [TokenLogprobs(lp.token_id, lp.logprob, [(t.token_id, t.logprob) for t in lp.top]) for lp in lps]


@torch.inference_mode()
def generate(model: Transformer, prompts: list[list[int]], params: SamplingParams | None = None, *,
             eos_token_ids: list[int] | set[int] | None = None, tokenizer: Any = None,
             prefill_chunk: int = 512) -> list[list[Completion]]:
    """Complete each prompt `params.n` times (beam search: the best `n` hypotheses); one list of
    completions per prompt.

    eos_token_ids: ids that end a sequence (default: the model config's and the tokenizer's).
    tokenizer: gives `Completion.text` and enables stop strings.
    """
    params = params or SamplingParams()
    _check(model, prompts, params, tokenizer)
    core = _core(model, tokenizer, prompts, params, prefill_chunk)
    eos = _eos(model, tokenizer, eos_token_ids)
    sinks = []
    try:
        for p in prompts:
            sink = _Sink(f"offline-{next(_ids)}", params.n)
            core.add_request(EngineRequest(list(p), params, sink.request_id, eos_token_ids=eos), sink)
            sinks.append(sink)
        parts: list[dict[int, list[CompletionDelta]]] = [{} for _ in prompts]
        while True:  # collect first: a request may end in add_request (an error) before any step
            for sink, acc in zip(sinks, parts, strict=True):
                for d in sink.take():
                    acc.setdefault(d.index, []).append(d)
            if not core.has_work:
                break
            core.step()
    finally:
        core.close()
    return [[_completion(acc.get(i, []), tokenizer is not None) for i in range(params.n)] for acc in parts]


def _completion(deltas: list[CompletionDelta], has_text: bool) -> Completion:
    ids = [t for d in deltas for t in d.token_ids]
    lps = [lp for d in deltas if d.logprobs for lp in d.logprobs] if any(d.logprobs for d in deltas) else None
    last = deltas[-1] if deltas else CompletionDelta(0, "", [], None, "length")
    return Completion(ids, "".join(d.text for d in deltas) if has_text else None, last.finish_reason or "length",
                      last.stop_reason, last.cumulative_logprob or 0.0, _to_sampler_logprobs(lps), last.score)


@torch.inference_mode()
def stream_generate(model: Transformer, tokenizer: Any, prompt_ids: list[int],
                    params: SamplingParams | None = None, *, eos_token_ids: list[int] | set[int] | None = None,
                    prefill_chunk: int = 512) -> Iterator[StreamEvent]:
    """Generate for one prompt, yielding one event per token; the last event has `finish_reason` set.
    Text deltas come through the tokenizer's incremental detokenizer and the stop matcher, so they
    never contain half a character or any part of a stop string. Closing the iterator early frees
    the request."""
    params = params or SamplingParams()
    _check(model, [prompt_ids], params, tokenizer)
    if params.n != 1 or params.use_beam_search:
        raise InvalidParameterError("streaming supports n=1 without beam search")
    core = _core(model, tokenizer, [prompt_ids], params, prefill_chunk)
    request = EngineRequest(list(prompt_ids), params, eos_token_ids=_eos(model, tokenizer, eos_token_ids))
    try:
        for d in stream_request(core, request):
            info = _to_sampler_logprobs(d.logprobs)
            yield StreamEvent(d.text, d.token_ids[-1] if d.token_ids else -1, info[0] if info else None,
                              d.finish_reason)
    finally:
        core.close()


def stream_request(core: EngineCore, request: EngineRequest) -> Iterator[CompletionDelta]:
    """Run one request on a core the caller keeps (a chat keeps its prefix cache across turns);
    deltas as they come. Closing the iterator early aborts the request."""
    sink = _Sink(request.request_id, request.params.n)
    core.add_request(request, sink)
    try:
        while not sink.ended or sink.items:
            if core.has_work and not sink.ended:
                core.step()
            elif not sink.items and not sink.ended:
                raise RuntimeError("the engine core stopped before the request ended")
            yield from sink.take()
    finally:
        if not sink.ended:
            core.abort(request.request_id)
