"""Speculative decoding by prompt lookup: draft tokens copied from the request's own text, verified
in the step's forward.

When the last few generated tokens also occur earlier in the prompt or the output (a quoted
passage, code being edited, a name repeated), the tokens that followed them there are a cheap guess
at what comes next. The engine core feeds the guess ("draft") after the choice's pending token in
the same forward; the logits at each draft position say whether the model agrees. For greedy
choices the result is exactly what plain decoding gives, in fewer steps.

It pays only when the forward is bound by reading the weights (few rows per step) and guesses are
often right, so the policy speculates only while at most `max_rows` choices decode, and a choice
whose drafts are mostly rejected stops drafting for a while.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class PromptLookup:
    """An n-gram index over one choice's text (prompt + output so far), updated as tokens arrive:
    O(1) per token, so drafting costs nothing measurable per step.

    The draft is what followed the latest earlier occurrence of the text's last n-gram (longest n
    first, down to `min_ngram`: a single shared token is too weak a hint)."""

    def __init__(self, max_ngram: int = 3, min_ngram: int = 2):
        self.sizes = range(max_ngram, min_ngram - 1, -1)
        self.history: list[int] = []
        self._last: dict[tuple[int, ...], int] = {}  # n-gram -> end (exclusive) of its latest occurrence
        self._prev: dict[int, int | None] = {}  # n -> end of the previous occurrence of the last n-gram

    def extend(self, tokens: list[int]) -> None:
        h = self.history
        for t in tokens:
            h.append(t)
            i = len(h)
            for n in self.sizes:
                if i >= n:
                    key = tuple(h[i - n:i])
                    self._prev[n] = self._last.get(key)
                    self._last[key] = i

    def draft(self, max_draft: int) -> list[int]:
        for n in self.sizes:
            end = self._prev.get(n)
            if end is not None:
                follow = self.history[end:end + max_draft]
                if follow:
                    return follow
        return []


def prompt_lookup(history: list[int], *, max_ngram: int = 3, min_ngram: int = 2, max_draft: int = 4) -> list[int]:
    """The draft `PromptLookup` gives for `history` (one-off use)."""
    index = PromptLookup(max_ngram, min_ngram)
    index.extend(history)
    return index.draft(max_draft)


@dataclass
class DraftStats:
    """Per choice: its n-gram index and how its drafts fared, to stop drafting where guesses keep failing."""

    drafted: int = 0
    accepted: int = 0
    pause: int = 0  # steps left without drafting
    backoff: int = 32  # next pause; doubles after each failed try (text that is not a copy stays so)
    lookup: PromptLookup | None = None

    def record(self, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted
        # Measured on SmolLM2-135M (2 cores): a step with 4 draft rows costs ~1.4x a plain one, so
        # drafting loses below ~40% acceptance. Pause, then try again later: the text changes.
        if self.drafted >= 12:
            if self.accepted < 0.4 * self.drafted:
                self.pause, self.backoff = self.backoff, min(1024, 2 * self.backoff)
            else:
                self.backoff = 32
            self.drafted = self.accepted = 0


class SpeculationPolicy:
    """When to draft. max_rows: speculate only while at most this many choices decode (a bigger
    batch is already using the weights it reads); 0 turns speculation off (default 2, or 0 when
    the environment has AIGC_SPECULATION=0)."""

    def __init__(self, max_rows: int | None = None, max_draft: int = 4):
        if max_rows is None:  # AIGC_SPECULATION=0 turns it off (benchmarks of plain decoding)
            max_rows = 0 if os.environ.get("AIGC_SPECULATION", "1").strip().lower() in ("0", "off", "false") else 2
        self.max_rows, self.max_draft = max_rows, max_draft
        # totals for metrics
        self.drafted_tokens = 0
        self.accepted_tokens = 0

    @staticmethod
    def eligible(params) -> bool:
        """Greedy choices whose next token depends only on the logits (no penalties, bias, logprobs or
        grammar: drafts are verified against the model, not against a structured output's mask)."""
        return (params.greedy and not params.uses_penalties and not params.logit_bias and params.logprobs is None
                and not params.use_beam_search and params.guided is None)

    def draft(self, prompt: list[int], output: list[int], stats: DraftStats, room: int) -> list[int]:
        """A draft of at most `room` tokens for a choice whose text is prompt + output."""
        if stats.lookup is None:
            stats.lookup = PromptLookup()
            stats.lookup.extend(prompt)
        seen = len(stats.lookup.history) - len(prompt)
        if seen < len(output):
            stats.lookup.extend(output[seen:])
        if stats.pause > 0:
            stats.pause -= 1
            return []
        return stats.lookup.draft(min(self.max_draft, room))

    def record(self, stats: DraftStats, drafted: int, accepted: int) -> None:
        stats.record(drafted, accepted)
        self.drafted_tokens += drafted
        self.accepted_tokens += accepted

    @property
    def acceptance(self) -> float:
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0
