"""What the engine keeps per request and per choice while it runs, and how a sampled token becomes text.

A request with `n` choices is prefilled once; its choices then decode in their own KV slots. Each
choice turns its tokens into text with an incremental detokenizer followed by a stop-string matcher,
so a delta never carries half a character or any part of a stop string.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aigc.engine.protocol import CompletionDelta, EngineRequest, TokenLogprob, TopLogprob
from aigc.engine.stream import EngineStream
from aigc.generation.params import SamplingParams
from aigc.generation.sampler import SamplingState, TokenLogprobs
from aigc.generation.stop import StopMatcher
from aigc.tokenizer import IncrementalDetokenizer, Tokenizer


@dataclass
class ChoiceState:
    index: int
    sampling: SamplingState
    detokenizer: IncrementalDetokenizer
    stop: StopMatcher
    slot: int = -1
    output: list[int] = field(default_factory=list)
    pending: int | None = None  # the last sampled token: its K/V is written by the next decode step
    finish_reason: str | None = None
    stop_reason: str | int | None = None

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


class RequestState:
    def __init__(self, request: EngineRequest, stream: EngineStream, tokenizer: Tokenizer, *,
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
            stop_ids |= tokenizer.eos_token_ids
        self.stop_ids = frozenset(stop_ids)
        self.choices: list[ChoiceState] = []
        if not params.use_beam_search:
            for i in range(params.n):
                seed = None if params.seed is None else params.seed + i  # choice i is reproducible alone
                self.choices.append(ChoiceState(
                    i, SamplingState(params, self.prompt, vocab_size, device, seed=seed),
                    tokenizer.detokenizer(skip_special_tokens=True), StopMatcher(params.stop)))
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

    def accept(self, choice: ChoiceState, token: int, info: TokenLogprobs | None) -> CompletionDelta:
        """Append a sampled token to `choice`; return its delta (finish_reason set if it ended)."""
        if not choice.output and self.stream.metrics.time_to_first_token_s is None:
            self.stream.metrics.time_to_first_token_s = time.monotonic() - self.submitted_at
        choice.output.append(token)
        self.stream.metrics.completion_tokens += 1
        if token in self.stop_ids:
            text = choice.end("stop", token)  # the stop token itself is not text
        else:
            text = choice.stop.push(choice.detokenizer.push(token))
            if choice.stop.stopped:
                text += choice.end("stop", choice.stop.matched)
            elif len(choice.output) >= self.max_new:
                text += choice.end("length")
            else:
                choice.pending = token
        logprobs = None if info is None else [self._logprob(info)]
        return CompletionDelta(choice.index, text, [token], logprobs, choice.finish_reason, choice.stop_reason)

    def _logprob(self, info: TokenLogprobs) -> TokenLogprob:
        decode = self.tokenizer.decode
        top = [TopLogprob(t, decode([t]), lp) for t, lp in info.top]
        return TokenLogprob(info.token_id, decode([info.token_id]), info.logprob, top)
