"""The engine's per-token log-probabilities in the two shapes the OpenAI API uses.

Chat: `{"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}`.
Completions: parallel lists `tokens`, `token_logprobs`, `top_logprobs` (dicts token -> logprob,
the chosen token included, as OpenAI documents) and `text_offset` (where each token starts in the
choice's text).
"""

from __future__ import annotations

import math

from aigc.engine.protocol import TokenLogprob
from aigc.server.schemas import ChatTokenLogprob, ChatTopLogprob, CompletionLogprobs


def _finite(x: float) -> float:
    # JSON has no -inf; a token masked out (top-k, logit_bias -100) gets the most negative float.
    return x if math.isfinite(x) else -9999.0


def _bytes(token: str) -> list[int]:
    return list(token.encode("utf-8"))


def chat_logprobs(items: list[TokenLogprob]) -> list[ChatTokenLogprob]:
    return [
        ChatTokenLogprob(
            token=t.token, logprob=_finite(t.logprob), bytes=_bytes(t.token),
            top_logprobs=[ChatTopLogprob(token=a.token, logprob=_finite(a.logprob), bytes=_bytes(a.token)) for a in t.top],
        )
        for t in items
    ]


class CompletionLogprobsBuilder:
    """Accumulates one choice's completions-style logprobs; `text_offset` continues across deltas."""

    def __init__(self, start_offset: int = 0):
        self.offset = start_offset

    def add(self, items: list[TokenLogprob], into: CompletionLogprobs | None = None) -> CompletionLogprobs:
        out = into if into is not None else CompletionLogprobs()
        for t in items:
            out.tokens.append(t.token)
            out.token_logprobs.append(_finite(t.logprob))
            top = {a.token: _finite(a.logprob) for a in t.top}
            top.setdefault(t.token, _finite(t.logprob))
            out.top_logprobs.append(top)
            out.text_offset.append(self.offset)
            self.offset += len(t.token)
        return out
