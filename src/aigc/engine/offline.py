"""The engine driven from a CLI or a script: start it for one loaded model, run requests, collect text.

`aigc generate` and `aigc chat` use this, so they go through the same engine (scheduler, native
mixed-batch forward, sampler seeds, stop handling) as `aigc serve`: a seeded request gives the same
samples on the command line and over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aigc.engine.engine import Engine
from aigc.engine.protocol import CompletionDelta, EngineRequest, TokenLogprob

if TYPE_CHECKING:
    from aigc.generation.params import SamplingParams
    from aigc.models.loader import LoadedModel


@dataclass
class ChoiceOutput:
    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    logprobs: list[TokenLogprob] | None = None

    @property
    def cumulative_logprob(self) -> float | None:
        return None if self.logprobs is None else sum(lp.logprob for lp in self.logprobs)


@contextmanager
def started_engine(loaded: LoadedModel, *, max_concurrency: int = 1, max_context: int | None = None,
                   max_queue: int = 0) -> Iterator[Engine]:
    engine = Engine(loaded.model, loaded.tokenizer, loaded.name, max_concurrency=max_concurrency,
                    max_queue=max_queue, max_context=max_context or loaded.context_window)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


def stream(engine: Engine, prompt_ids: list[int], params: SamplingParams) -> Iterator[CompletionDelta]:
    """Deltas of one request as they are generated (cancelled if the caller stops early)."""
    s = engine.submit(EngineRequest(list(prompt_ids), params))
    try:
        yield from s
    finally:
        s.cancel()


def complete(engine: Engine, prompt_ids: list[int], params: SamplingParams) -> list[ChoiceOutput]:
    """Every choice of one request, finished."""
    n = 1 if params.use_beam_search else params.n
    outs = [ChoiceOutput(i) for i in range(n)]
    for d in stream(engine, prompt_ids, params):
        while d.index >= len(outs):  # beam search returns num_return_sequences hypotheses
            outs.append(ChoiceOutput(len(outs)))
        o = outs[d.index]
        o.text += d.text
        o.token_ids += d.token_ids
        if d.logprobs is not None:
            o.logprobs = (o.logprobs or []) + d.logprobs
        if d.finish_reason is not None:
            o.finish_reason, o.stop_reason = d.finish_reason, d.stop_reason
    return outs
