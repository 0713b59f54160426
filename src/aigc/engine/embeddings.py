"""Text embeddings from a decoder model: mean of the final (normalised) hidden states over the
input's tokens, L2-normalised (the pooling sentence-transformers calls "mean"; decoder models are not
trained as embedders, so this is a baseline, not a retrieval-grade model). `dimensions` keeps the
first d components and normalises again, the way OpenAI's text-embedding-3 models shorten theirs.

It runs the torch network without a KV cache, beside the engine's worker: the weights are only read,
and packed weights go through the same native kernels (which take one call at a time).
"""

from __future__ import annotations

import numpy as np
import torch

from aigc.models.transformer import Transformer


def embed(model: Transformer, inputs: list[list[int]], dimensions: int | None = None) -> list[np.ndarray]:
    """One float32 vector per input (token ids, each non-empty and within the model's window)."""
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for ids in inputs:
            h = model.hidden_states(torch.tensor([ids], device=model.device))[0].float()  # [T, D]
            v = h.mean(dim=0)
            if dimensions is not None:
                v = v[:dimensions]
            v = v / v.norm().clamp_min(1e-12)
            out.append(v.cpu().numpy().astype(np.float32))
    return out
