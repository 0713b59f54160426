"""ModelRunner: turns a scheduled step into model forwards on the engine's one KV cache, and samples.

It owns the tensors (the cache and the per-step inputs) so the scheduler can stay plain Python.
Every method must run on the engine's worker thread under `torch.inference_mode()`.
"""

from __future__ import annotations

import torch

from aigc.engine.scheduler import DecodeBatch, PrefillChunk, SlotCopy
from aigc.generation.sampler import Sampler, SamplingState, TokenLogprobs
from aigc.models.transformer import CacheWrite, Transformer

Sampled = tuple[list[int], list[TokenLogprobs | None]]


class ModelRunner:
    def __init__(self, model: Transformer, slots: int, max_len: int):
        self.model = model.eval()
        self.device = model.device
        self.cache = model.new_cache(slots, max_len)
        # Two samplers: each caches per-row parameter tensors for its usual batch composition.
        self._decode_sampler, self._prefill_sampler = Sampler(), Sampler()

    def copy(self, copies: list[SlotCopy]) -> None:
        for c in copies:
            if c.length > 0 and c.src != c.dst:
                self.cache.copy_slot(c.src, c.dst, c.length)

    def decode(self, batch: DecodeBatch) -> Sampled:
        """One token for every active row of `batch` (rows lo..lo+len(tokens)-1 of the cache)."""
        ids = torch.tensor(batch.tokens, device=self.device)[:, None]
        pos = torch.tensor(batch.positions, device=self.device)[:, None]
        write = CacheWrite(rows=slice(batch.lo, batch.lo + len(batch.tokens)), length=max(batch.positions) + 1,
                           positions=pos)
        h = self.model.hidden_states(ids, pos, cache=self.cache, write=write)[:, 0]
        if len(batch.active) != len(batch.tokens):  # idle rows inside the range: skip their vocab matmul
            h = h[torch.tensor(batch.active, device=self.device)]
        logits = self.model.lm_head(h)
        return self._sample(self._decode_sampler, logits, [c.sampling for c in batch.choices])

    def prefill(self, chunk: PrefillChunk) -> Sampled | None:
        """Write a prompt chunk's K/V; after the last chunk, sample each choice's first token."""
        ids = torch.tensor([chunk.token_ids], device=self.device)
        write = CacheWrite(rows=slice(chunk.slot, chunk.slot + 1), length=chunk.start + len(chunk.token_ids),
                           start=chunk.start)
        if not chunk.last:
            self.model.hidden_states(ids, cache=self.cache, write=write)
            return None
        logits = self.model(ids, cache=self.cache, write=write, last_only=True)[:, -1]
        rows = [c.sampling for c in chunk.request.choices]
        return self._sample(self._prefill_sampler, logits.expand(len(rows), -1), rows)

    @staticmethod
    def _sample(sampler: Sampler, logits: torch.Tensor, rows: list[SamplingState]) -> Sampled:
        ids, _, infos = sampler.sample(logits, rows).tolist(rows)
        return ids, infos
