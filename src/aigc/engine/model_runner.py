"""ModelRunner: turns a scheduled step into one model forward on the engine's KV cache, and samples.

It owns the tensors (the cache and the per-step inputs) so the scheduler can stay plain Python.
Every method must run on the engine's worker thread under `torch.inference_mode()`.

On the CPU, Llama-family models run natively (`models/native.py`): the step's decode tokens and its
prefill chunk go through ONE forward (a mixed batch, as in vLLM's v1 scheduler), so a prompt being
prefilled never costs the running streams a second pass over the weights. The native KV cache is
float16 and grows with the positions in use instead of holding slots x max_context up front.
Elsewhere (GPU, GPT-2) the torch network runs the decode rows and the chunk as two forwards.
"""

from __future__ import annotations

import torch

from aigc.engine.scheduler import DecodeBatch, PrefillChunk, SlotCopy
from aigc.generation.sampler import Sampler, SamplingState, TokenLogprobs
from aigc.models.native import NativeModel, native_unsupported_reason, new_native_cache
from aigc.models.transformer import CacheWrite, Transformer

Sampled = tuple[list[int], list[float], list[TokenLogprobs | None]]
INITIAL_NATIVE_CAPACITY = 256  # positions per slot at start; doubles when a sequence needs more


class ModelRunner:
    def __init__(self, model: Transformer, slots: int, max_len: int, native: bool | None = None):
        self.model = model.eval()
        self.device = model.device
        self.max_len = max_len
        use_native = native_unsupported_reason(model) is None if native is None else native
        self.native: NativeModel | None = None
        self.torch_threads_before: int | None = None
        if use_native:
            self.cache = new_native_cache(model, slots, min(max_len, INITIAL_NATIVE_CAPACITY))
            self.native = NativeModel(model, self.cache)
            # What torch still does per step (sampling over one vocabulary row per sequence) is tiny;
            # torch's OpenMP threads spin after each op and would fight the kernels' own threads for
            # the cores (measured: 52 vs 139 tok/s on 2 cores). Restored by close().
            self.torch_threads_before = torch.get_num_threads()
            torch.set_num_threads(1)
        else:
            self.cache = model.new_cache(slots, max_len)
        # Two samplers: each caches per-row parameter tensors for its usual batch composition.
        self._decode_sampler, self._prefill_sampler = Sampler(), Sampler()

    def close(self) -> None:
        """Give torch back the threads it had before this runner (once)."""
        if self.torch_threads_before is not None:
            torch.set_num_threads(self.torch_threads_before)
            self.torch_threads_before = None

    def copy(self, copies: list[SlotCopy]) -> None:
        for c in copies:
            if c.length > 0 and c.src != c.dst:
                self.cache.copy_slot(c.src, c.dst, c.length)

    def forward(self, batch: DecodeBatch | None, chunk: PrefillChunk | None
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Run the step's decode rows and prefill chunk. Returns the logits of the decode rows
        ([len(batch.choices) + draft tokens, V], in the batch's order, each row followed by its
        drafts' rows) and, after a prompt's last chunk, of its last token ([1, V]); None where there
        is none. Drafts need the native forward (the torch path ignores them: none are made)."""
        if self.native is not None:
            return self._native_forward(batch, chunk)
        return (self.decode(batch) if batch is not None else None,
                self.prefill(chunk) if chunk is not None else None)

    def sample(self, kind: str, logits: torch.Tensor, rows: list[SamplingState]) -> Sampled:
        """Token ids, their logprobs and logprob details for `rows` ("decode" or "prefill" sampler:
        each caches per-row parameter tensors for its usual batch composition)."""
        sampler = self._decode_sampler if kind == "decode" else self._prefill_sampler
        return sampler.sample(logits, rows).tolist(rows)

    def reorder(self, moves: list[tuple[int, int]], length: int) -> None:
        """Slot dst takes the first `length` K/V positions of slot src, for every (dst, src) at once
        (beam search following its surviving beams)."""
        dst = torch.tensor([d for d, _ in moves], device=self.device)
        src = torch.tensor([s for _, s in moves], device=self.device)
        for t in self.cache.k + self.cache.v:
            t[dst, :, :length] = t[src, :, :length]

    # ---- native: one mixed forward --------------------------------------------------------------

    def _ensure_capacity(self, needed: int) -> None:
        cap = self.cache.max_len
        if needed <= cap:
            return
        if needed > self.max_len:
            raise ValueError(f"position {needed - 1} is past the context window ({self.max_len})")
        self.cache = self.cache.grown(min(self.max_len, max(needed, 2 * cap)))
        self.native.bind_cache(self.cache)

    def _native_forward(self, batch, chunk) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        ids: list[int] = []
        pos: list[int] = []
        slots: list[int] = []
        out_rows: list[int] = []
        if batch is not None:  # each row's token, then its draft tokens (if any) at the next positions
            drafts = batch.drafts or [[] for _ in batch.active]
            for off, draft in zip(batch.active, drafts, strict=True):
                p, s = batch.positions[off], batch.lo + off
                ids += [batch.tokens[off], *draft]
                pos += range(p, p + 1 + len(draft))
                slots += [s] * (1 + len(draft))
            out_rows = list(range(len(ids)))
        wants_prefill_logits = chunk is not None and chunk.last
        if chunk is not None:
            ids += chunk.token_ids
            pos += range(chunk.start, chunk.start + len(chunk.token_ids))
            slots += [chunk.slot] * len(chunk.token_ids)
            if wants_prefill_logits:
                out_rows.append(len(ids) - 1)
        if not ids:
            return None, None
        self._ensure_capacity(max(pos) + 1)
        n_decode = len(ids) - (len(chunk.token_ids) if chunk is not None else 0)
        logits = self.native.forward(ids, pos, slots, out_rows, n_decode=n_decode)
        n_dec = len(out_rows) - (1 if wants_prefill_logits else 0)
        return (logits[:n_dec] if batch is not None else None,
                logits[n_dec:] if wants_prefill_logits else None)

    # ---- torch: decode rows and prefill chunk as two forwards -----------------------------------

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        """Logits of every active row of `batch` (rows lo..lo+len(tokens)-1 of the cache)."""
        ids = torch.tensor(batch.tokens, device=self.device)[:, None]
        pos = torch.tensor(batch.positions, device=self.device)[:, None]
        write = CacheWrite(rows=slice(batch.lo, batch.lo + len(batch.tokens)), length=max(batch.positions) + 1,
                           positions=pos)
        h = self.model.hidden_states(ids, pos, cache=self.cache, write=write)[:, 0]
        if len(batch.active) != len(batch.tokens):  # idle rows inside the range: skip their vocab matmul
            h = h[torch.tensor(batch.active, device=self.device)]
        return self.model.lm_head(h)

    def prefill(self, chunk: PrefillChunk) -> torch.Tensor | None:
        """Write a prompt chunk's K/V; after the last chunk, return its last token's logits [1, V]."""
        ids = torch.tensor([chunk.token_ids], device=self.device)
        write = CacheWrite(rows=slice(chunk.slot, chunk.slot + 1), length=chunk.start + len(chunk.token_ids),
                           start=chunk.start)
        if not chunk.last:
            self.model.hidden_states(ids, cache=self.cache, write=write)
            return None
        return self.model(ids, cache=self.cache, write=write, last_only=True)[:, -1]
