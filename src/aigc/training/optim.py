"""AdamW with decoupled weight decay on matrices only, and the warmup + cosine learning-rate schedule.

Weight decay pulls weights towards zero; on norm gains, biases and embeddings that only hurts (a norm
gain of 0 switches a channel off, an embedding row of a rare token decays between its updates), so
those parameters go to a group without decay, as in GPT-2/nanoGPT/Llama training recipes.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float, *, trainable_only: bool = True) -> list[dict]:
    """Two AdamW groups: matrices (decayed) and norms/biases/embeddings (not decayed).

    Embeddings are found by module type (`nn.Embedding`), so a tied LM head (the same tensor) is not
    decayed either. Shared tensors appear once. Frozen parameters are skipped when `trainable_only`.
    """
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():  # parameters() already de-duplicates tied tensors
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        (no_decay if p.ndim < 2 or id(p) in embedding_ids else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def fused_adamw_available(device: torch.device | str) -> bool:
    """Fused AdamW (one kernel for all tensors) exists for CUDA and, in recent torch, for CPU."""
    dev = torch.device(device)
    try:
        p = nn.Parameter(torch.zeros(1, device=dev))
        p.grad = torch.zeros_like(p)
        torch.optim.AdamW([p], fused=True).step()
        return True
    except (RuntimeError, TypeError):
        return False


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    trainable_only: bool = True,
    *,
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over `param_groups(model)`; fused when the device supports it (fused=None = auto)."""
    groups = param_groups(model, weight_decay, trainable_only=trainable_only)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    device = groups[0]["params"][0].device
    if fused is None:
        fused = fused_adamw_available(device)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=bool(fused))


def lr_at(step: int, warmup: int, max_steps: int, lr: float, min_lr: float) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, cosine decay to `min_lr`.

    Warmup reaches `lr` at step `warmup - 1` (so step 0 already learns); after `max_steps` the rate
    stays at `min_lr`.
    """
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if step >= max_steps:
        return min_lr
    span = max(1, max_steps - warmup)
    progress = (step - warmup) / span
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
