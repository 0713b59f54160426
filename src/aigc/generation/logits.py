"""Logits processors for a batch whose rows belong to unrelated requests with different parameters.

Every function takes logits [B, V] and per-row parameter tensors [B], so one call serves the whole
batch. Order (as in HF and vLLM): penalties and logit_bias on the raw logits, then temperature,
top-k, top-p, min-p. The three filters share one ascending sort of each row (skipped entirely when
no row in the batch filters).
"""

from __future__ import annotations

import torch

from aigc.generation.params import SamplingParams


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> None:
    """HF repetition penalty, in place: for tokens in `seen` [B, V], divide positive logits by the
    row's penalty and multiply negative ones."""
    p = penalty[:, None]
    penalised = torch.where(logits < 0, logits * p, logits / p)
    torch.where(seen, penalised, logits, out=logits)


def apply_presence_frequency(logits: torch.Tensor, counts: torch.Tensor, presence: torch.Tensor,
                             frequency: torch.Tensor) -> None:
    """OpenAI penalties, in place: logit -= presence * [count > 0] + frequency * count."""
    logits -= frequency[:, None] * counts + presence[:, None] * (counts > 0)


def apply_temperature(logits: torch.Tensor, temperature: torch.Tensor) -> None:
    """Divide each row by its temperature, in place; rows with temperature 0 (greedy) are left as they are."""
    t = torch.where(temperature > 0, temperature, torch.ones_like(temperature))
    logits /= t[:, None]


def sort_and_filter(logits: torch.Tensor, top_k: torch.Tensor | None, top_p: torch.Tensor | None,
                    min_p: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply top-k, top-p and min-p (in that order) per row; return (filtered logits sorted ascending,
    sort order). Removed tokens get -inf. A filter given as None is off for every row.

    top_k [B] long: keep the k highest logits (ties with the k-th kept, as in HF); 0 means off.
    top_p [B]: keep the smallest high-probability set whose mass reaches p (at least one token).
    min_p [B]: drop tokens whose probability is below min_p times the top token's.
    """
    sorted_logits, order = logits.sort(dim=-1)
    V = logits.shape[-1]
    if top_k is not None:
        k = torch.where(top_k > 0, top_k.clamp(max=V), V)
        kth = sorted_logits.gather(1, (V - k)[:, None])
        sorted_logits.masked_fill_(sorted_logits < kth, float("-inf"))
    if top_p is not None:
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum <= (1 - top_p)[:, None]
        drop[:, -1] = False  # the most likely token always stays
        sorted_logits.masked_fill_(drop, float("-inf"))
    if min_p is not None:
        probs = sorted_logits.softmax(dim=-1)
        drop = probs < min_p[:, None] * probs[:, -1:]
        sorted_logits.masked_fill_(drop, float("-inf"))
    return sorted_logits, order


def filter_logits(logits: torch.Tensor, top_k: torch.Tensor | None = None, top_p: torch.Tensor | None = None,
                  min_p: torch.Tensor | None = None) -> torch.Tensor:
    """`sort_and_filter` mapped back to vocabulary order (a new tensor)."""
    sorted_logits, order = sort_and_filter(logits, top_k, top_p, min_p)
    return torch.empty_like(sorted_logits).scatter_(1, order, sorted_logits)


class PenaltyState:
    """One sequence's token history for penalties: which ids it has seen (prompt + output, for the
    repetition penalty) and how often it generated each id (for presence/frequency). Rows [1, V]."""

    def __init__(self, params: SamplingParams, prompt_ids: list[int], vocab_size: int,
                 device: torch.device | str):
        self.repetition = params.repetition_penalty
        self.presence = params.presence_penalty
        self.frequency = params.frequency_penalty
        self.seen: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        if self.repetition != 1.0:
            self.seen = torch.zeros(1, vocab_size, dtype=torch.bool, device=device)
            if prompt_ids:
                self.seen[0, torch.tensor(prompt_ids, device=device)] = True
        if self.presence != 0.0 or self.frequency != 0.0:
            self.counts = torch.zeros(1, vocab_size, device=device)


class BatchPenalties:
    """The penalised rows of a batch, applied and recorded with a few batched ops per step.

    The rows' histories are stacked into [P, V] tensors and each `PenaltyState` is re-pointed at its
    row of the stack, so what `record` writes is the sequence's own history when the batch changes.
    """

    def __init__(self, states: list[PenaltyState | None], device: torch.device):
        B = len(states)
        rep = [i for i, s in enumerate(states) if s is not None and s.seen is not None]
        cnt = [i for i, s in enumerate(states) if s is not None and s.counts is not None]
        self.seen = self.counts = None
        self._views: list[tuple[PenaltyState, torch.Tensor]] = []
        if rep:
            self.seen = self._stack(states, rep, "seen")
            self.rep_rows = None if len(rep) == B else torch.tensor(rep, device=device)
            self.rep = torch.tensor([states[i].repetition for i in rep], device=device)
        if cnt:
            self.counts = self._stack(states, cnt, "counts")
            self.cnt_rows = None if len(cnt) == B else torch.tensor(cnt, device=device)
            self.presence = torch.tensor([states[i].presence for i in cnt], device=device)
            self.frequency = torch.tensor([states[i].frequency for i in cnt], device=device)

    def _stack(self, states: list[PenaltyState | None], rows: list[int], name: str) -> torch.Tensor:
        stacked = torch.cat([getattr(states[i], name) for i in rows])
        for j, i in enumerate(rows):
            view = stacked[j : j + 1]
            setattr(states[i], name, view)
            self._views.append((states[i], view))
        return stacked

    def still_bound(self) -> bool:
        """False once another batch re-pointed one of these rows (its history moved there)."""
        return all(s.seen is v or s.counts is v for s, v in self._views)

    def apply(self, logits: torch.Tensor) -> None:
        if self.seen is not None:
            _on_rows(logits, self.rep_rows, lambda x: apply_repetition_penalty(x, self.seen, self.rep))
        if self.counts is not None:
            _on_rows(logits, self.cnt_rows,
                     lambda x: apply_presence_frequency(x, self.counts, self.presence, self.frequency))

    def record(self, tokens: torch.Tensor) -> None:
        """Add each row's sampled token [B] to its history (no device sync)."""
        if self.seen is not None:
            t = tokens if self.rep_rows is None else tokens[self.rep_rows]
            self.seen[torch.arange(len(t), device=t.device), t] = True
        if self.counts is not None:
            t = tokens if self.cnt_rows is None else tokens[self.cnt_rows]
            self.counts[torch.arange(len(t), device=t.device), t] += 1


def _on_rows(logits: torch.Tensor, rows: torch.Tensor | None, fn) -> None:
    """Run the in-place `fn` on the given rows of `logits` (all rows when None)."""
    if rows is None:
        fn(logits)
        return
    sub = logits[rows]
    fn(sub)
    logits[rows] = sub


def logit_bias_row(bias: dict[int, float], vocab_size: int, device: torch.device | str) -> torch.Tensor:
    """A dense [V] vector of one request's logit_bias."""
    row = torch.zeros(vocab_size, device=device)
    if bias:
        ids = torch.tensor(list(bias), device=device)
        row[ids] = torch.tensor(list(bias.values()), device=device)
    return row
