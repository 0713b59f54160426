"""Model FLOPs utilisation: the work a training step needs, and the machine's measured matmul peak.

MFU = (training FLOPs per token x tokens/s) / peak FLOP/s. Training FLOPs per token follow the
PaLM appendix: 6 x (matmul parameters, LM head included) + 12 x layers x attention width x context
(the attention score and value products, forward and backward). The peak is measured, not taken
from a datasheet: a square matmul in the training dtype on the same device, in the same run, so
other tenants and clock speeds affect both sides alike.
"""

from __future__ import annotations

import time

import torch

from aigc.models.config import ModelConfig

_PEAK_CACHE: dict[tuple[str, torch.dtype], float] = {}


def training_flops_per_token(cfg: ModelConfig, context: int) -> float:
    """FLOPs to train on one token (forward + backward) with `context` tokens per sequence."""
    matmul_params = cfg.num_parameters(include_embeddings=False) + cfg.vocab_size * cfg.hidden_size
    attention = 12 * cfg.num_layers * cfg.num_heads * cfg.head_dim * context
    return 6.0 * matmul_params + attention


def measure_peak_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.bfloat16, *,
                       seconds: float = 0.3, max_size: int | None = None) -> float:
    """Best FLOP/s of a square matmul in `dtype` on `device` (cached per process).

    The size doubles from 256 until one product takes >= 20 ms (or `max_size`), so a device that is
    slow in this dtype (bf16 on a CPU without AVX512-BF16/AMX) is measured quickly too.
    """
    device = torch.device(device)
    key = (str(device), dtype)
    if key in _PEAK_CACHE:
        return _PEAK_CACHE[key]
    max_size = max_size or (8192 if device.type == "cuda" else 2048)

    def timed(n: int, reps: int) -> float:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        _sync(device)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        return best

    n = 256
    timed(n, 1)  # warm-up: library initialisation, thread pool start
    while True:
        t = timed(n, 1)
        if t >= 0.02 or n >= max_size:
            break
        n *= 2
    reps = max(2, min(20, int(seconds / max(t, 1e-6))))
    best = timed(n, reps)
    peak = 2.0 * n**3 / best
    _PEAK_CACHE[key] = peak
    return peak


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
