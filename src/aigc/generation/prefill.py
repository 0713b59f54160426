"""Checks of prompts before they reach the engine core (empty, too long, ids outside the vocabulary)."""

from __future__ import annotations

from aigc.models.transformer import Transformer


class ContextLengthError(ValueError):
    """A prompt that does not fit the model's context window."""


def check_prompts(model: Transformer, prompts: list[list[int]]) -> None:
    cfg = model.config
    if not prompts:
        raise ValueError("no prompts given")
    for ids in prompts:
        if not ids:
            raise ValueError("prompt is empty; give at least one token (e.g. the BOS token)")
        if len(ids) >= cfg.context_length:
            raise ContextLengthError(f"prompt has {len(ids)} tokens but the model's context window is "
                                     f"{cfg.context_length}")
        if min(ids) < 0 or max(ids) >= cfg.vocab_size:
            bad = next(t for t in ids if not 0 <= t < cfg.vocab_size)
            raise ValueError(f"prompt token id {bad} is outside the vocabulary (size {cfg.vocab_size})")
