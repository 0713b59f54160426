"""Multi-process training with torchrun: process-group set-up, and the few collectives loops need.

`torchrun --nproc_per_node N aigc ...` starts N copies and tells each its place through the
environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). The CLI reads that environment
(`DistEnv.from_environ(os.environ)`) and passes it down; nothing here reads the environment itself.
CPU runs use the gloo backend, CUDA runs nccl (one GPU per local rank).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> DistEnv:
        """The place of this process as torchrun describes it (a single process without torchrun)."""
        if "WORLD_SIZE" not in environ:
            return cls()
        world = int(environ["WORLD_SIZE"])
        return cls(rank=int(environ.get("RANK", 0)), local_rank=int(environ.get("LOCAL_RANK", 0)),
                   world_size=world, local_world_size=int(environ.get("LOCAL_WORLD_SIZE", world)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str | None, env: DistEnv) -> torch.device:
    """`auto` (or None): this rank's GPU when CUDA is available, else the CPU."""
    if requested in (None, "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but no CUDA GPU is available")
        if device.index is None:
            device = torch.device("cuda", env.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def init_distributed(env: DistEnv, device: torch.device, *, threads: int | None = None,
                     timeout_s: float = 600.0) -> int:
    """Join the process group (no-op for a single process); gloo on CPU, nccl on CUDA.

    On CPU the cores of a machine are split between its local ranks (unless `threads` is given), so
    N processes do not each start one thread per core and fight over them. Returns the previous
    thread count, for callers that restore it (`torch.set_num_threads`) when they are done.
    """
    previous = torch.get_num_threads()
    if device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(threads or max(1, cores // max(1, env.local_world_size)))
    if not env.distributed or dist.is_initialized():
        return previous
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size,
                            timeout=timedelta(seconds=timeout_s),
                            device_id=device if device.type == "cuda" else None)
    return previous


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (the value itself without a process group)."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s Python object on every rank (e.g. a decision only the main process can make)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def ranks_agree(value: torch.Tensor) -> bool:
    """Whether every rank holds the same small tensor (e.g. a checksum of the weights)."""
    if not (dist.is_available() and dist.is_initialized()):
        return True
    gathered = [torch.empty_like(value) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, value.contiguous())
    return all(torch.equal(g, gathered[0]) for g in gathered)
