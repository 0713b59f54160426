"""Batches of training windows that depend only on (seed, sample index).

The token stream is cut into chunks of `block_size + 1` ids (inputs plus the shifted targets, with
stride `block_size`). Each epoch visits every chunk once in an order drawn from `seed + epoch`.
Sample number i of the run is chunk perm_epoch[i mod n] of epoch i // n, so the batch of any
optimizer step, micro-step and rank can be computed directly: a resumed run needs only the step
number to continue at exactly the same data position, and no sampler state is saved.
"""

from __future__ import annotations

import numpy as np
import torch

from aigc.training.data.shards import TokenStore

_EPOCH_SEED_STRIDE = 1_000_003  # a prime: epochs of nearby seeds do not share permutations


class WindowSampler:
    def __init__(self, store: TokenStore, block_size: int, seed: int, *, name: str = "train"):
        self.store, self.block_size, self.seed = store, block_size, seed
        self.n_chunks = (len(store) - 1) // block_size
        if self.n_chunks < 1:
            raise ValueError(
                f"the {name} split has {len(store)} tokens, fewer than block size + 1 = {block_size + 1}; "
                "add data or lower --block-size")
        self._perm_epoch = -1
        self._perm: torch.Tensor | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed + epoch * _EPOCH_SEED_STRIDE)
            self._perm, self._perm_epoch = torch.randperm(self.n_chunks, generator=g), epoch
        return self._perm

    def chunk_of(self, index: int) -> int:
        """Which chunk sample `index` of the run reads."""
        epoch, pos = divmod(index, self.n_chunks)
        return int(self._permutation(epoch)[pos])

    def window(self, chunk: int) -> np.ndarray:
        return self.store.read(chunk * self.block_size, self.block_size + 1)

    def batch(self, first_index: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) [batch_size, block_size] for samples first_index .. first_index+batch_size-1."""
        rows = np.stack([self.window(self.chunk_of(first_index + b)) for b in range(batch_size)])
        data = torch.from_numpy(rows)
        return data[:, :-1], data[:, 1:]

    def epoch_of(self, index: int) -> float:
        return index / self.n_chunks


def sample_index(step: int, micro_step: int, rank: int, *, grad_accum: int, world_size: int, batch_size: int) -> int:
    """Index of the first sample in (optimizer step, micro-step, rank)'s batch; ranks never overlap."""
    return ((step * grad_accum + micro_step) * world_size + rank) * batch_size


def eval_chunks(n_chunks: int, count: int) -> list[int]:
    """`count` chunks spread evenly over a split: the same validation windows at every evaluation."""
    count = min(count, n_chunks)
    return sorted({int(i) for i in np.linspace(0, n_chunks - 1, count)})
