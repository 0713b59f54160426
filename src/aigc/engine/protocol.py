"""What the serving engine and its callers (server, CLI, apps) agree on. No tensors cross this line.

A caller tokenizes (with the model's chat template when it is a chat), builds an `EngineRequest`,
and `Engine.submit` returns a `RequestStream`: an async iterator of `CompletionDelta`s, one or more
per generated token step, carrying text that is already detokenized and stop-string safe. Iterate
it to the end, or call `cancel()` (client gone, timeout) to free the request's KV slot at the next
engine step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aigc.generation.params import SamplingParams


class EngineError(Exception):
    """Base of the errors an engine raises to its caller; each maps to one HTTP status."""

    status_code = 500


class QueueFullError(EngineError):
    """Every KV slot is busy and the waiting queue is full: try again later (HTTP 429)."""

    status_code = 429

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class EngineNotReadyError(EngineError):
    """The model is still loading or the engine has stopped (HTTP 503)."""

    status_code = 503


@dataclass
class TopLogprob:
    token_id: int
    token: str
    logprob: float


@dataclass
class TokenLogprob:
    """Log-probability of one generated token and the most likely alternatives at that step."""

    token_id: int
    token: str
    logprob: float
    top: list[TopLogprob] = field(default_factory=list)


@dataclass
class EngineRequest:
    prompt_token_ids: list[int]
    params: SamplingParams
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # ids that end a choice (besides params.stop_token_ids); None = the tokenizer's end-of-sequence ids
    eos_token_ids: list[int] | None = None


@dataclass
class CompletionDelta:
    """New output of one choice (`index` < params.n). `finish_reason` is set on a choice's last delta."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None  # "stop" | "length" | "abort"
    stop_reason: str | int | None = None  # the stop string or stop token id that ended it
    # sum of the chosen tokens' logprobs so far (beam search: of the hypothesis), and its beam score
    cumulative_logprob: float | None = None
    score: float | None = None


@dataclass
class RequestMetrics:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens reused from the prefix cache
    queued_s: float = 0.0
    time_to_first_token_s: float | None = None
    total_s: float = 0.0


class RequestStream(Protocol):
    request_id: str
    metrics: RequestMetrics

    def __aiter__(self) -> AsyncIterator[CompletionDelta]: ...

    def cancel(self) -> None: ...


@dataclass
class EngineStats:
    running: int
    queued: int
    kv_slots_used: int
    kv_slots_total: int
    kv_tokens_used: int
    kv_tokens_total: int
    spec_draft_tokens: int = 0  # speculative decoding: draft tokens proposed, and accepted by the model
    spec_accepted_tokens: int = 0

    @property
    def kv_usage(self) -> float:
        return self.kv_tokens_used / self.kv_tokens_total if self.kv_tokens_total else 0.0
