"""What SFT, DPO/KTO and classifier fine-tuning share around the one training loop (`loop.py`): their
settings (`FinetuneConfig`), reading JSONL, dropout and freezing, the step count and learning-rate
defaults, and `fit`: the loop run by every process with the output directory written by the main one,
appearing only when complete (`checkpointing.atomic_directory`), and the resume checkpoint next to it.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torch import nn

from aigc.training.checkpointing import atomic_directory
from aigc.training.config import TrainConfig
from aigc.training.distributed import DistEnv, barrier
from aigc.training.finetune_config import FinetuneConfig
from aigc.training.loop import LoopConfig, LoopResult, ResumeFile, Runtime, train_loop
from aigc.training.progress import TrainingProgress

# ---- data -------------------------------------------------------------------------------------

def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line of a .jsonl or .jsonl.gz file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a .jsonl or .jsonl.gz file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{path}:{n}: expected a JSON object, got {type(record).__name__}")
                yield n, record
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as e:
            raise ValueError(f"{path}: cannot be read as UTF-8 JSON Lines ({e})") from None


# ---- model set-up -----------------------------------------------------------------------------

def set_dropout(model: nn.Module, p: float) -> None:
    """Set every dropout probability (the network reads `cfg.dropout` only when it is built).
    Call it before `add_lora`, which has its own dropout."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
        if hasattr(m, "dropout") and isinstance(m.dropout, float):  # attention's SDPA dropout
            m.dropout = p


def freeze(backbone: nn.Module, *, embeddings: bool = False, layers: int = 0) -> None:
    """Freeze the token (and position) embeddings and/or the first `layers` blocks of our Transformer."""
    n = len(backbone.layers)
    if not 0 <= layers <= n:
        raise ValueError(f"--freeze-layers must be between 0 and {n} (the model has {n} blocks), got {layers}")
    if embeddings:
        for emb in (backbone.tok_emb, backbone.pos_emb):
            if emb is not None:
                emb.requires_grad_(False)
    for block in list(backbone.layers)[:layers]:
        block.requires_grad_(False)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total), counting shared (tied) tensors once."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    return sum(p.numel() for p in seen.values() if p.requires_grad), total


# ---- output directory -------------------------------------------------------------------------

def check_output_dir(out: Path, force: bool) -> None:
    """Fail early (before any loading or training) if `out` holds something we would overwrite."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ValueError(f"{out} is not empty; pass --force to replace it")


def progress_console(quiet: bool):
    """Where progress goes: stderr, or nowhere with --quiet."""
    from rich.console import Console

    return Console(stderr=True, quiet=quiet)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


# ---- the run ----------------------------------------------------------------------------------

def resolve_loop(cfg: TrainConfig, n_train: int, default_lr: float, env: DistEnv | None = None,
                 epochs: float = 1.0) -> LoopConfig:
    """The loop's settings: steps from `epochs` (or --max-steps), the learning rate (the trainer's
    default unless --lr), min_lr (lr / 10 unless --min-lr), warmup (--warmup-fraction of the steps
    unless --warmup-steps)."""
    world = (env or DistEnv()).world_size
    per_epoch = math.ceil(n_train / (cfg.batch_size * cfg.grad_accum * world))
    steps = cfg.max_steps or max(1, math.ceil(per_epoch * epochs))
    lr = cfg.lr if cfg.lr is not None else default_lr
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, int(steps * cfg.warmup_fraction + 1e-9))
    return LoopConfig.from_settings(cfg, max_steps=steps, lr=lr, warmup_steps=warmup)


def fit(cfg: FinetuneConfig, rt: Runtime, model: nn.Module, batches: Callable[[int], Any], loss_fn: Callable,
        loop: LoopConfig, *, description: str, header: str, quiet: bool,
        write_output: Callable[[Path, LoopResult], None], evaluate: Callable[[], dict[str, float]] | None = None,
        bar_metrics: tuple[str, ...] = ()) -> LoopResult:
    """Train with the one loop in every process; the main one then writes the output with
    `write_output(tmp, result)` into a directory that becomes `cfg.out` only when complete, beside
    metrics.jsonl, TensorBoard events and loss.png, and removes the resume checkpoint."""
    checkpointer = ResumeFile.next_to(cfg.out, cfg.resume)
    main = rt.env.is_main
    with atomic_directory(cfg.out) if main else contextlib.nullcontext(cfg.out) as tmp:
        with TrainingProgress(tmp, loop.max_steps, description=description, console=progress_console(quiet),
                              enabled=main, tensorboard=cfg.tensorboard) as progress:
            progress.print(header)
            result = train_loop(model, batches, loss_fn, loop, device=rt.device, amp=rt.amp, progress=progress,
                                env=rt.env, evaluate=evaluate, checkpointer=checkpointer, bar_metrics=bar_metrics)
        if main:
            write_output(tmp, result)
    if main:
        checkpointer.clear()
    barrier()
    return result
