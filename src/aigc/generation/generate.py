"""Offline generation: a batch of prompts in, completions out (and a streaming variant for one prompt).

Prompts are left-padded and prefilled once; the `n` samples of a prompt get copies of its cache row.
Every step runs one token per unfinished row. Rows finish independently: a finished row's cache slot
is refilled by moving the last live row into it, so the batch shrinks instead of computing
dead rows. The serving engine (continuous batching) is built on the same pieces in `engine/`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from aigc.generation.beam_search import beam_search
from aigc.generation.params import InvalidParameterError, SamplingParams
from aigc.generation.prefill import check_prompts, grow_cache, padding_mask, prefill
from aigc.generation.sampler import Sampler, SamplingState, TokenLogprobs
from aigc.generation.stop import StopMatcher
from aigc.models.transformer import CacheWrite, Transformer

INITIAL_DECODE_ROOM = 256  # cache positions reserved past the prompt; the cache doubles when full


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


def _sample_seed(seed: int | None, index: int) -> int | None:
    """Seed of the index-th sample of a seeded request: distinct per sample, reproducible per request."""
    if seed is None or index == 0:
        return seed
    return hash((seed, index)) & 0x7FFF_FFFF_FFFF_FFFF  # int hashing is not randomised per process


def _stop_ids(model: Transformer, tokenizer: Any, params: SamplingParams, eos_token_ids) -> set[int]:
    if eos_token_ids is None:
        eos_token_ids = set(model.config.eos_token_ids)
        if tokenizer is not None:
            eos_token_ids |= set(tokenizer.eos_token_ids)
    return (set() if params.ignore_eos else set(eos_token_ids)) | set(params.stop_token_ids)


def _max_new(model: Transformer, prompt: list[int], params: SamplingParams) -> int:
    room = model.config.max_position_embeddings - len(prompt)
    return room if params.max_tokens is None else min(params.max_tokens, room)


class _Sequence:
    """One generated sequence: its tokens, text pipeline (detokenizer -> stop matcher) and finish state."""

    def __init__(self, prompt_index: int, sample_index: int, state: SamplingState, max_new: int,
                 tokenizer: Any, stop_ids: set[int]):
        self.prompt_index, self.sample_index, self.state = prompt_index, sample_index, state
        self.max_new, self.stop_ids = max_new, stop_ids
        self.detok = tokenizer.detokenizer(skip_special_tokens=True) if tokenizer is not None else None
        self.matcher = StopMatcher(state.params.stop) if state.params.stop else None
        self.token_ids: list[int] = []
        self.text: list[str] = []
        self.logprobs: list[TokenLogprobs] | None = [] if state.params.logprobs is not None else None
        self.cumulative = 0.0
        self.finish_reason: str | None = None
        self.stop_reason: str | int | None = None

    def add(self, token: int, logprob: float, info: TokenLogprobs | None) -> StreamEvent:
        self.token_ids.append(token)
        self.cumulative += logprob
        if self.logprobs is not None:
            self.logprobs.append(info)
        if token in self.stop_ids:  # its text is never emitted
            self.finish_reason, self.stop_reason = "stop", token
            delta = self._end_text()
        else:
            delta = ""
            if self.detok is not None:
                delta = self.detok.push(token)
                if self.matcher is not None:
                    delta = self.matcher.push(delta)
            if self.matcher is not None and self.matcher.stopped:
                self.finish_reason, self.stop_reason = "stop", self.matcher.matched
            elif len(self.token_ids) >= self.max_new:
                self.finish_reason = "length"
                delta += self._end_text()
        self.text.append(delta)
        return StreamEvent(delta, token, info, self.finish_reason)

    def _end_text(self) -> str:
        """Release text held back by the detokenizer and the stop matcher."""
        if self.detok is None:
            return ""
        tail = self.detok.flush()
        if self.matcher is None:
            return tail
        tail = self.matcher.push(tail)
        if self.matcher.stopped:  # the flushed tail completed a stop string
            self.finish_reason, self.stop_reason = "stop", self.matcher.matched
            return tail
        return tail + self.matcher.finish()

    def completion(self) -> Completion:
        text = "".join(self.text) if self.detok is not None else None
        return Completion(list(self.token_ids), text, self.finish_reason, self.stop_reason, self.cumulative,
                          self.logprobs)


class _BatchDecoder:
    """Decodes prompts x n samples together, one token per live row per `step()`."""

    def __init__(self, model: Transformer, prompts: list[list[int]], params: SamplingParams,
                 stop_ids: set[int], tokenizer: Any, prefill_chunk: int):
        cfg, dev = model.config, model.device
        self.model = model
        B, n = len(prompts), params.n
        width = max(len(p) for p in prompts)
        max_new = [_max_new(model, p, params) for p in prompts]
        self.full_len = width + max(max_new)
        capacity = min(self.full_len, width + INITIAL_DECODE_ROOM)
        # Row r holds sample r // B of prompt r % B, so the prefilled rows 0..B-1 are copied, not moved.
        R = B * n
        lengths = [len(prompts[r % B]) for r in range(R)]
        self.cache = model.new_cache(R, capacity)
        self.key_mask = padding_mask(lengths, capacity, dev)
        logits = prefill(model, self.cache, prompts, self.key_mask, prefill_chunk)
        for r in range(B, R):
            self.cache.copy_slot(r % B, r, width)
        self.logits = logits.repeat(n, 1) if n > 1 else logits
        self.positions = torch.tensor(lengths, device=dev)  # next position of each row (for padded batches)
        self.cur = width  # cache columns written
        self.sampler = Sampler()
        self.seqs = [
            _Sequence(r % B, r // B, SamplingState(params, prompts[r % B], cfg.vocab_size, dev,
                                                   seed=_sample_seed(params.seed, r // B)),
                      max_new[r % B], tokenizer, stop_ids)
            for r in range(R)
        ]
        self.done: list[_Sequence] = []

    def step(self) -> list[tuple[_Sequence, StreamEvent]]:
        rows = [s.state for s in self.seqs]
        out = self.sampler.sample(self.logits, rows)
        ids, lps, infos = out.tolist(rows)
        events = [(s, s.add(ids[i], lps[i], infos[i])) for i, s in enumerate(self.seqs)]
        tokens = out.token_ids
        live = [i for i, s in enumerate(self.seqs) if s.finish_reason is None]
        if len(live) < len(self.seqs):
            self.done += [s for s in self.seqs if s.finish_reason is not None]
            if not live:
                self.seqs = []
                return events
            tokens = self._compact(live, tokens)
        self._forward(tokens)
        return events

    def _compact(self, live: list[int], tokens: torch.Tensor) -> torch.Tensor:
        """Move the last live rows into the slots of finished ones so live rows are 0..R'-1."""
        R, alive = len(live), set(live)
        movers = iter(i for i in live if i >= R)
        order = [i if i in alive else next(movers) for i in range(R)]
        for dst, src in enumerate(order):
            if src != dst:
                self.cache.copy_slot(src, dst, self.cur)
        index = torch.tensor(order, device=tokens.device)
        self.seqs = [self.seqs[i] for i in order]
        self.positions = self.positions[index]
        if self.key_mask is not None:
            self.key_mask[:R] = self.key_mask[index]
        return tokens[index]

    def _forward(self, tokens: torch.Tensor) -> None:
        if self.cur + 1 > self.cache.max_len:
            new_len = min(2 * self.cache.max_len, self.full_len)
            self.cache = grow_cache(self.model, self.cache, self.cur, new_len)
            if self.key_mask is not None:
                extra = self.key_mask.new_ones(self.key_mask.shape[0], new_len - self.key_mask.shape[1])
                self.key_mask = torch.cat((self.key_mask, extra), dim=1)
        R = len(self.seqs)
        padded = self.key_mask is not None
        write = CacheWrite(rows=slice(0, R), length=self.cur + 1, start=self.cur,
                           key_mask=self.key_mask[:R] if padded else None)
        pos = self.positions[:, None] if padded else None
        self.logits = self.model(tokens[:, None], pos, cache=self.cache, write=write)[:, -1]
        self.cur += 1
        self.positions += 1


def _check(model: Transformer, prompts: list[list[int]], params: SamplingParams, tokenizer: Any) -> None:
    params.validate(model.config.vocab_size)
    check_prompts(model, prompts)
    if params.stop and tokenizer is None:
        raise InvalidParameterError("stop strings need a tokenizer (pass tokenizer=...)")


@torch.inference_mode()
def generate(model: Transformer, prompts: list[list[int]], params: SamplingParams | None = None, *,
             eos_token_ids: list[int] | set[int] | None = None, tokenizer: Any = None,
             prefill_chunk: int = 512) -> list[list[Completion]]:
    """Complete each prompt `params.n` times; returns one list of completions per prompt.

    eos_token_ids: ids that end a sequence (default: the model config's and the tokenizer's).
    tokenizer: gives `Completion.text` and enables stop strings (`decode`, `detokenizer()`, `eos_token_ids`).
    """
    params = params or SamplingParams()
    _check(model, prompts, params, tokenizer)
    stop_ids = _stop_ids(model, tokenizer, params, eos_token_ids)
    if params.use_beam_search:
        return [_beam_completions(model, p, params, stop_ids, tokenizer, prefill_chunk) for p in prompts]
    decoder = _BatchDecoder(model, prompts, params, stop_ids, tokenizer, prefill_chunk)
    while decoder.seqs:
        decoder.step()
    results: list[list[Completion]] = [[None] * params.n for _ in prompts]
    for s in decoder.done:
        results[s.prompt_index][s.sample_index] = s.completion()
    return results


def _beam_completions(model: Transformer, prompt: list[int], params: SamplingParams, stop_ids: set[int],
                      tokenizer: Any, prefill_chunk: int) -> list[Completion]:
    hyps = beam_search(model, prompt, params, stop_token_ids=sorted(stop_ids),
                       max_new_tokens=_max_new(model, prompt, params), prefill_chunk=prefill_chunk)
    out = []
    for h in hyps:
        text = None
        if tokenizer is not None:
            ids = h.token_ids[:-1] if h.ended_by_stop_token else h.token_ids
            text = tokenizer.decode(ids, skip_special_tokens=True)
        stop_reason = h.token_ids[-1] if h.ended_by_stop_token else None
        out.append(Completion(h.token_ids, text, "stop" if h.ended_by_stop_token else "length", stop_reason,
                              h.logprob_sum, None, h.score))
    return out


@torch.inference_mode()
def stream_generate(model: Transformer, tokenizer: Any, prompt_ids: list[int],
                    params: SamplingParams | None = None, *, eos_token_ids: list[int] | set[int] | None = None,
                    prefill_chunk: int = 512) -> Iterator[StreamEvent]:
    """Generate for one prompt, yielding one event per token; the last event has `finish_reason` set.
    Text deltas come through the tokenizer's incremental detokenizer and the stop matcher, so they
    never contain half a character or any part of a stop string."""
    params = params or SamplingParams()
    _check(model, [prompt_ids], params, tokenizer)
    if params.n != 1 or params.use_beam_search:
        raise InvalidParameterError("streaming supports n=1 without beam search")
    stop_ids = _stop_ids(model, tokenizer, params, eos_token_ids)
    decoder = _BatchDecoder(model, [prompt_ids], params, stop_ids, tokenizer, prefill_chunk)
    while decoder.seqs:
        for _, event in decoder.step():
            yield event
