"""Getting prompts into a KV cache: left-padded, chunked prefill, and growing a cache that filled up.

Prompts of different lengths are left-padded so every row's last prompt token sits at the same cache
position and decoding writes one shared column per step. Padding keys are masked out and rotary /
learned positions restart at 0 on each row's first real token, so a padded row computes exactly what
it would alone (as HF does with left padding and an attention mask).
"""

from __future__ import annotations

import torch

from aigc.models.transformer import CacheWrite, KVCache, Transformer


class ContextLengthError(ValueError):
    """A prompt that does not fit the model's context window."""


def check_prompts(model: Transformer, prompts: list[list[int]]) -> None:
    cfg = model.config
    if not prompts:
        raise ValueError("no prompts given")
    for ids in prompts:
        if not ids:
            raise ValueError("prompt is empty; give at least one token (e.g. the BOS token)")
        if len(ids) >= cfg.max_position_embeddings:
            raise ContextLengthError(f"prompt has {len(ids)} tokens but the model's context window is "
                                     f"{cfg.max_position_embeddings}")
        if min(ids) < 0 or max(ids) >= cfg.vocab_size:
            bad = next(t for t in ids if not 0 <= t < cfg.vocab_size)
            raise ValueError(f"prompt token id {bad} is outside the vocabulary (size {cfg.vocab_size})")


def padding_mask(lengths: list[int], capacity: int, device: torch.device) -> torch.Tensor | None:
    """Key mask [B, capacity] for left-padded rows (False on padding), or None when nothing is padded."""
    width = max(lengths)
    if all(n == width for n in lengths):
        return None
    pad = torch.tensor([width - n for n in lengths], device=device)
    return torch.arange(capacity, device=device)[None, :] >= pad[:, None]


def prefill(model: Transformer, cache: KVCache, prompts: list[list[int]], key_mask: torch.Tensor | None,
            chunk: int = 512) -> torch.Tensor:
    """Run left-padded `prompts` into cache rows 0..B-1, `chunk` columns at a time (bounds the
    attention mask and activations); return the logits of each row's last token [B, V]."""
    dev = model.device
    B, width = len(prompts), max(len(p) for p in prompts)
    ids = torch.zeros(B, width, dtype=torch.long, device=dev)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, device=dev)
    positions = None
    if key_mask is not None:
        pad = torch.tensor([width - len(p) for p in prompts], device=dev)
        positions = (torch.arange(width, device=dev)[None, :] - pad[:, None]).clamp(min=0)
    rows = slice(0, B)
    logits = None
    for start in range(0, width, chunk):
        end = min(start + chunk, width)
        write = CacheWrite(rows=rows, length=end, start=start,
                           key_mask=None if key_mask is None else key_mask[:B])
        pos = None if positions is None else positions[:, start:end]
        if end < width:  # no logits needed before the last chunk
            model.hidden_states(ids[:, start:end], pos, cache=cache, write=write)
        else:
            logits = model(ids[:, start:end], pos, cache=cache, write=write, last_only=True)[:, 0]
    return logits


def grow_cache(model: Transformer, cache: KVCache, used: int, new_len: int) -> KVCache:
    """A bigger cache holding the first `used` positions of every slot of `cache`."""
    bigger = model.new_cache(cache.slots, new_len)
    for old, new in zip(cache.k + cache.v, bigger.k + bigger.v, strict=True):
        new[:, :, :used].copy_(old[:, :, :used])
    return bigger
