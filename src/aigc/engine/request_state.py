"""What the engine keeps per request and per choice while it runs, and how a sampled token becomes text.

A request with `n` choices is prefilled once; its choices then decode in their own KV slots. Each
choice turns its tokens into text with an incremental detokenizer followed by a stop-string matcher,
so a delta never carries half a character or any part of a stop string.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aigc.engine.protocol import CompletionDelta, EngineRequest, TokenLogprob, TopLogprob
from aigc.engine.speculation import DraftStats
from aigc.engine.stream import EngineStream
from aigc.generation.beam_search import BeamSearch
from aigc.generation.guided import Constraint
from aigc.generation.params import InvalidParameterError, SamplingParams
from aigc.generation.sampler import SamplingState, TokenLogprobs
from aigc.generation.stop import StopMatcher
from aigc.tokenizer import IncrementalDetokenizer, Tokenizer


class _NoText:
    """Detokenizer for token-only requests (offline generate() without a tokenizer)."""

    def push(self, token: int) -> str:
        return ""

    def flush(self) -> str:
        return ""


@dataclass
class ChoiceState:
    """One sampled choice, or one beam row of a beam-search request (then `sampling` is None)."""

    index: int
    sampling: SamplingState | None
    detokenizer: IncrementalDetokenizer | _NoText
    stop: StopMatcher
    slot: int = -1
    output: list[int] = field(default_factory=list)
    pending: int | None = None  # the last sampled token: its K/V is written by the next decode step
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    cumulative_logprob: float = 0.0
    spec: DraftStats = field(default_factory=DraftStats)  # how its speculative drafts fared

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def end(self, reason: str, stop_reason: str | int | None = None) -> str:
        """Finish this choice; return the text still held by the detokenizer / stop matcher."""
        self.finish_reason, self.stop_reason, self.pending = reason, stop_reason, None
        text = self.stop.push(self.detokenizer.flush())
        if self.stop.stopped:  # the held bytes completed a stop string
            self.finish_reason, self.stop_reason = "stop", self.stop.matched
        return text + self.stop.finish()


def sample_seed(seed: int | None, index: int) -> int | None:
    """Seed of choice `index` of a seeded request: choice i of (seed, n) samples what choice 0 of
    (seed + i, 1) samples, on the command line and over HTTP alike."""
    return None if seed is None else seed + index


class RequestState:
    def __init__(self, request: EngineRequest, stream: EngineStream, tokenizer: Tokenizer | None, *,
                 vocab_size: int, device, max_len: int, submitted_at: float):
        params: SamplingParams = request.params
        self.request, self.stream, self.params = request, stream, params
        self.tokenizer = tokenizer
        self.prompt = list(request.prompt_token_ids)
        # Completion budget: max_tokens, and never past the end of the KV slot.
        room = max_len - len(self.prompt)
        self.max_new = room if params.max_tokens is None else min(params.max_tokens, room)
        stop_ids = set(params.stop_token_ids)
        if not params.ignore_eos:
            eos = request.eos_token_ids if request.eos_token_ids is not None else (
                tokenizer.eos_token_ids if tokenizer is not None else ())
            stop_ids |= set(eos)
        self.stop_ids = frozenset(stop_ids)
        self.choices: list[ChoiceState] = []
        self.beam: BeamSearch | None = None

        def detok():
            return tokenizer.detokenizer(skip_special_tokens=True) if tokenizer is not None else _NoText()

        if params.use_beam_search:  # one row per beam; they emit text only when the search ends
            self.beam = BeamSearch(params, self.prompt, stop_token_ids=sorted(self.stop_ids),
                                   max_new_tokens=self.max_new, vocab_size=vocab_size, device=device)
            self.choices = [ChoiceState(i, None, _NoText(), StopMatcher([])) for i in range(params.num_beams)]
        else:
            for i in range(params.n):
                seed = sample_seed(params.seed, i)
                constraint = None
                if params.guided is not None:
                    if tokenizer is None:
                        raise InvalidParameterError("structured outputs need the model's tokenizer")
                    constraint = Constraint(params.guided, tokenizer, vocab_size)
                self.choices.append(ChoiceState(
                    i, SamplingState(params, self.prompt, vocab_size, device, seed=seed, constraint=constraint),
                    detok(), StopMatcher(params.stop)))
        self.slots: list[int] = []  # reserved KV slots; slots[0] receives the prefill
        self.prefilled = 0  # prompt tokens whose K/V are in slots[0]
        self.submitted_at = submitted_at
        self.admitted_at: float | None = None
        stream.metrics.prompt_tokens = len(self.prompt)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def finished(self) -> bool:
        return all(c.finished for c in self.choices)

    def accept(self, choice: ChoiceState, token: int, info: TokenLogprobs | None,
               logprob: float = 0.0) -> CompletionDelta:
        """Append a sampled token to `choice`; return its delta (finish_reason set if it ended)."""
        if not choice.output and self.stream.metrics.time_to_first_token_s is None:
            self.stream.metrics.time_to_first_token_s = time.monotonic() - self.submitted_at
        choice.output.append(token)
        choice.cumulative_logprob += logprob
        self.stream.metrics.completion_tokens += 1
        if token in self.stop_ids:
            text = choice.end("stop", token)  # the stop token itself is not text
        else:
            text = choice.stop.push(choice.detokenizer.push(token))
            if choice.stop.stopped:
                text += choice.end("stop", choice.stop.matched)
            elif choice.sampling is not None and choice.sampling.constraint is not None \
                    and choice.sampling.constraint.done:  # the structured output is complete
                text += choice.end("stop")
            elif len(choice.output) >= self.max_new:
                text += choice.end("length")
            else:
                choice.pending = token
        logprobs = None if info is None else [self._logprob(info)]
        return CompletionDelta(choice.index, text, [token], logprobs, choice.finish_reason, choice.stop_reason,
                               choice.cumulative_logprob)

    def beam_results(self) -> list[CompletionDelta]:
        """After the search ended: one delta per returned hypothesis, best first."""
        deltas = []
        for i, h in enumerate(self.beam.hypotheses()):
            body = h.token_ids[:-1] if h.ended_by_stop_token else h.token_ids
            reason = "stop" if h.ended_by_stop_token else "length"
            stop_reason = h.token_ids[-1] if h.ended_by_stop_token else None
            text = self.tokenizer.decode(body, skip_special_tokens=True) if self.tokenizer is not None else ""
            deltas.append(CompletionDelta(i, text, list(h.token_ids), None, reason, stop_reason, h.logprob_sum,
                                          h.score))
        return deltas

    def _logprob(self, info: TokenLogprobs) -> TokenLogprob:
        if self.tokenizer is None:
            return TokenLogprob(info.token_id, "", info.logprob, [TopLogprob(t, "", lp) for t, lp in info.top])
        decode = self.tokenizer.decode
        top = [TopLogprob(t, decode([t]), lp) for t, lp in info.top]
        return TokenLogprob(info.token_id, decode([info.token_id]), info.logprob, top)
