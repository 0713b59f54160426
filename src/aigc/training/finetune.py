"""What SFT, DPO/KTO and classifier fine-tuning share: reading JSONL, device and precision choice,
freezing, dropout, a memory check, the optimisation loop and an output directory that only appears
when complete. A loss function may return metrics beside the loss (a preference objective's rewards);
the loop logs their means with the loss.

The loop is the usual one: AdamW and warmup + cosine decay (`optim`), gradient accumulation, gradient
clipping, autocast (bf16 on CUDA and on CPUs with native bf16; fp32 otherwise, where emulated bf16
would be slower than fp32), periodic evaluation, progress bar / metrics.jsonl / TensorBoard / loss
curve (`progress.TrainingProgress`). Outputs are written with `checkpointing.atomic_directory`.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aigc.training.checkpointing import capture_rng_state, restore_rng_state
from aigc.training.optim import build_optimizer, lr_at
from aigc.training.pretrain import available_memory_bytes
from aigc.training.progress import TrainingProgress


class ResourceError(ValueError):
    """The run would not fit in memory (or ran out of it)."""


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


# ---- device, precision, model set-up ----------------------------------------------------------

def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA GPU")
    return torch.device(name)


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast, or None for plain fp32. "auto": bf16 where the hardware runs it natively."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r}; choose auto, bf16 or fp32")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if _cpu_has_native_bf16() else None


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


def check_memory(model: nn.Module, device: torch.device, tokens_per_step: int, logits_width: int = 0,
                 extra_bytes: int = 0) -> None:
    """Refuse a run whose rough peak (weights, grads, AdamW state, activations, plus `extra_bytes`
    such as a frozen reference model) exceeds free memory."""
    cfg = getattr(model, "config", None) or model.backbone.config
    params = {id(p): p for p in model.parameters()}.values()
    weights = sum(p.numel() * p.element_size() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    # About 17 values of width d per token and layer are kept for backward (the Megatron-LM estimate
    # with flash attention), plus the logits and their gradient; 4 bytes each.
    acts = tokens_per_step * (cfg.num_layers * 17 * cfg.hidden_size + 3 * logits_width) * 4
    need = weights + trainable * 12 + acts + extra_bytes
    free = available_memory_bytes(device)
    if free is not None and need > free:
        raise ResourceError(
            f"this run needs about {need / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB is free on {device}; "
            "lower --batch-size or --max-length, or train LoRA adapters (--lora-r)")


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


# ---- the loop ---------------------------------------------------------------------------------

@dataclass
class LoopConfig:
    max_steps: int  # optimizer steps
    lr: float
    min_lr: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_accum: int = 1
    clip: float = 1.0
    log_every: int = 10
    eval_every: int = 0  # optimizer steps; 0 = only at the end
    checkpoint_every: int = 0  # optimizer steps between resume checkpoints in `resume_dir` (0: none)
    resume_dir: Path | None = None  # where the run's resume checkpoint lives (next to the output)
    resume: bool = False  # continue from the checkpoint there (without it, finding one is an error)


RESUME_FILE = "resume.pt"


def resume_dir_for(out: str | Path) -> Path:
    """A run's resume checkpoints sit next to its output, which appears only when the run is done."""
    out = Path(out)
    return out.with_name(f".{out.name}.resume")


def clear_resume(cfg: LoopConfig) -> None:
    """The run is published: its resume checkpoint is no longer needed."""
    if cfg.resume_dir is not None:
        shutil.rmtree(cfg.resume_dir, ignore_errors=True)


def _fingerprint(cfg: LoopConfig, model: nn.Module) -> dict[str, Any]:
    """What must be equal for a checkpoint to continue this run exactly."""
    return {"max_steps": cfg.max_steps, "lr": cfg.lr, "min_lr": cfg.min_lr, "warmup_steps": cfg.warmup_steps,
            "grad_accum": cfg.grad_accum, "weight_decay": cfg.weight_decay,
            "trainable": sorted(n for n, p in model.named_parameters() if p.requires_grad)}


def _save_resume(cfg: LoopConfig, state: dict[str, Any]) -> None:
    assert cfg.resume_dir is not None
    cfg.resume_dir.mkdir(parents=True, exist_ok=True)
    partial = cfg.resume_dir / f"{RESUME_FILE}.partial"
    torch.save(state, partial)
    os.replace(partial, cfg.resume_dir / RESUME_FILE)  # a crash while saving keeps the previous one


def _load_resume(cfg: LoopConfig, model: nn.Module) -> dict[str, Any] | None:
    path = cfg.resume_dir / RESUME_FILE if cfg.resume_dir is not None else None
    if path is None or not path.is_file():
        return None
    if not cfg.resume:
        raise ValueError(f"{cfg.resume_dir} holds an unfinished run; pass --resume to continue it, or delete it")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != _fingerprint(cfg, model):
        raise ValueError(f"{cfg.resume_dir} holds a run with other settings (steps, learning rate, batching or "
                         f"trained parameters); resume with the same ones, or delete it")
    return state


LossOutput = torch.Tensor | tuple[torch.Tensor, Mapping[str, float]]


def split_loss(out: LossOutput) -> tuple[torch.Tensor, Mapping[str, float]]:
    """(loss, metrics) from what a loss function returned (a bare loss has no metrics)."""
    return out if isinstance(out, tuple) else (out, {})


class MetricMeans:
    """Running means of named metrics between two log lines. A key counts only the micro-batches
    that reported it (a KTO batch without a 👎 reply has no rewards/rejected), as TRL averages."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: Mapping[str, float]) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()


def train_loop(model: nn.Module, batches: Iterator[Any], loss_fn: Callable[[nn.Module, Any], LossOutput],
               cfg: LoopConfig, device: torch.device, amp: torch.dtype | None, progress: TrainingProgress,
               evaluate: Callable[[], dict[str, float]] | None = None,
               bar_metrics: tuple[str, ...] = ()) -> float:
    """Run `cfg.max_steps` optimizer steps; `loss_fn(model, batch)` returns a scalar mean loss, or
    (loss, metrics) with floats to log beside it (a preference objective's rewards and margins).

    Logs train loss/lr/grad norm and the metrics' means since the previous line every `log_every`
    steps, and `evaluate()` (split "val") every `eval_every` steps; `bar_metrics` are also shown on
    the progress bar. Returns the last step's training loss.
    """
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas, trainable_only=True)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    start, seen = 0, 0
    resumed = _load_resume(cfg, model)
    if resumed is not None:
        # Exact continuation: the trained weights, the optimizer's moments, the data order (the batch
        # iterators are seeded, so skipping the consumed batches lands where the run stopped) and
        # the RNG streams dropout draws from, restored after the skipping.
        with torch.no_grad():
            for name, value in resumed["params"].items():
                trainable[name].copy_(value)
        optimizer.load_state_dict(resumed["optimizer"])
        for _ in range(resumed["step"] * cfg.grad_accum):
            next(batches)
        restore_rng_state(resumed["rng"])
        start, seen = resumed["step"], resumed["seen"]
        progress.print(f"resumed from step {start} ({cfg.resume_dir})")
    model.train()
    t0, total = time.perf_counter(), float("nan")
    window = MetricMeans()
    for step in range(start, cfg.max_steps):
        lr = lr_at(step, cfg.warmup_steps, cfg.max_steps, cfg.lr, cfg.min_lr)
        for g in optimizer.param_groups:
            g["lr"] = lr
        total = 0.0
        for _ in range(cfg.grad_accum):
            batch = next(batches)
            try:
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    loss, metrics = split_loss(loss_fn(model, batch))
                (loss / cfg.grad_accum).backward()
            except torch.OutOfMemoryError as e:
                raise ResourceError(f"out of memory on {device}; lower --batch-size or --max-length") from e
            total += loss.item() / cfg.grad_accum
            window.add(metrics)
            seen += batch.num_items
        if not math.isfinite(total):
            raise ValueError(f"the loss became {total} at step {step + 1}; lower --lr")
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip) if cfg.clip > 0 else None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        rate = seen / max(time.perf_counter() - t0, 1e-9)
        means = window.means()
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            record = {"loss": total, "lr": lr, "examples_per_s": rate, **means}
            if norm is not None:
                record["grad_norm"] = float(norm)
            progress.log(done, record)
            window.reset()
        shown = {k.rsplit("/", 1)[-1]: means[k] for k in bar_metrics if k in means}
        progress.update(done, loss=total, examples_per_s=rate, **shown)
        if cfg.resume_dir is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0 \
                and done != cfg.max_steps:
            _save_resume(cfg, {"step": done, "seen": seen, "fingerprint": _fingerprint(cfg, model),
                               "params": {n: p.detach().cpu().clone() for n, p in trainable.items()},
                               "optimizer": optimizer.state_dict(), "rng": capture_rng_state()})
        if evaluate is not None and cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.max_steps:
            scores = evaluate()
            progress.log(done, scores, split="val")
            progress.print(f"step {done}: " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
            model.train()
    model.eval()
    return total
