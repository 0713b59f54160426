"""The serving engine: continuous batching over a slotted KV cache, prefix reuse, streaming deltas.

`Engine(model, tokenizer, name).start()`, then `engine.submit(EngineRequest(ids, SamplingParams()))`
returns a stream of `CompletionDelta`s. See `protocol.py` for the types callers see.
"""

from aigc.engine.engine import Engine
from aigc.engine.protocol import (
    CompletionDelta,
    EngineError,
    EngineNotReadyError,
    EngineRequest,
    EngineStats,
    QueueFullError,
    RequestMetrics,
    RequestStream,
    TokenLogprob,
    TopLogprob,
)
from aigc.engine.stream import EngineStream

__all__ = [
    "CompletionDelta", "Engine", "EngineError", "EngineNotReadyError", "EngineRequest", "EngineStats",
    "EngineStream", "QueueFullError", "RequestMetrics", "RequestStream", "TokenLogprob", "TopLogprob",
]
