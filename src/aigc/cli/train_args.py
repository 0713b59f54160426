"""What every `aigc train` command shares: flags generated from its config dataclass (defaults <
`--config FILE.yaml` < flags; `training.config`), and running under torchrun.

Multi-process: `torchrun --nproc_per_node N -m aigc train COMMAND ...` (gloo on CPU, nccl on GPUs);
each process reads its place from torchrun's environment, and only the first one writes and reports.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, TypeVar

from aigc.training.config import TrainConfig, add_arguments, from_args

C = TypeVar("C", bound=TrainConfig)


def add_train_args(p: argparse.ArgumentParser, cls: type[TrainConfig], *, exclude: tuple[str, ...] = (),
                   lora: bool = True) -> None:
    add_arguments(p, cls, exclude=exclude)
    if lora:
        p.add_argument("--lora", action="store_true", help="train a LoRA adapter (rank 16 unless --lora-r says)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def config_from(cls: type[C], args: argparse.Namespace, **fixed: Any) -> C:
    """The run's settings; `--lora` means rank 16 unless a rank is given; models from the usual folder."""
    from aigc.cli.common import settings_from

    cfg = from_args(cls, args, **fixed)
    if getattr(args, "lora", False) and not getattr(cfg, "lora_r", 1):
        cfg.lora_r = 16
    if hasattr(cfg, "models_dir") and cfg.models_dir is None:
        cfg.models_dir = settings_from(args).models_dir
    return cfg


def run_processes(train: Callable[..., Any], cfg: TrainConfig, **kwargs: Any) -> tuple[Any, bool]:
    """`train(cfg, env=...)` in this process, as torchrun placed it; (result, whether this is the main one)."""
    from aigc.training.distributed import DistEnv, shutdown_distributed

    env = DistEnv.from_environ(os.environ)  # torchrun's RANK / WORLD_SIZE / LOCAL_RANK
    try:
        return train(cfg, env=env, **kwargs), env.is_main
    finally:
        shutdown_distributed()
