"""The serving engine: continuous batching over a slotted KV cache, prefix reuse, streaming deltas.

`Engine(model, tokenizer, name).start()`, then `engine.submit(EngineRequest(ids, SamplingParams()))`
returns a stream of `CompletionDelta`s. See `protocol.py` for the types callers see.

Names are imported lazily so that the API layer can use `aigc.engine.protocol` without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Engine": "aigc.engine.engine",
    "EngineStream": "aigc.engine.stream",
    **{name: "aigc.engine.protocol" for name in (
        "CompletionDelta", "EngineError", "EngineNotReadyError", "EngineRequest", "EngineStats",
        "QueueFullError", "RequestMetrics", "RequestStream", "TokenLogprob", "TopLogprob")},
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'aigc.engine' has no attribute {name!r}")
