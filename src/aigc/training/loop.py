"""The one training loop: pretraining, SFT, classification, DPO and KTO all run `train_loop`.

What a trainer brings: the model (its trainable parameters already chosen), a batch source (micro-batch
number -> batch), a loss function (`loss_fn(model, batch)` returns a scalar mean loss, or (loss, metrics)
with floats to log beside it, such as a preference objective's rewards), an optional `evaluate()`
and an optional `Checkpointer` (where resume checkpoints go). What the loop does for all of them:

- AdamW and warmup + cosine decay (`optim`), gradient accumulation, gradient-norm clipping, bf16
  autocast where the hardware runs it natively (`autocast_dtype`);
- several processes under torchrun: each computes its own micro-batches and the gradients are
  averaged over the processes before every optimizer step (what DDP does; done here on the
  gradients so a loss may call any method of the model, not only `forward`). Micro-batch k of
  step s on rank r is number (s * grad_accum + k) * world_size + r of the one data order, so N
  processes train on exactly the batches one process with N times the accumulation would;
- exact resume: checkpoints hold the trained weights, the optimizer's moments and the step; the
  data order is a function of the micro-batch number and dropout is seeded from (seed, step, rank)
  at every step, so a run continued from step s computes what the uninterrupted run computed;
- train loss / learning rate / gradient norm / throughput lines and evaluations into
  `progress.TrainingProgress` (progress bar with ETA, metrics.jsonl, TensorBoard, loss plot).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from aigc.training.distributed import DistEnv, all_reduce_mean, barrier, init_distributed, pick_device
from aigc.training.optim import build_optimizer, lr_at
from aigc.training.progress import TrainingProgress

_STEP_SEED_STRIDE = 1_000_003


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast, or None for plain fp32 (weights, gradients and optimizer state stay fp32 either
    way). "auto": bf16 where the hardware runs it natively -- CUDA with bf16, CPUs with AVX512-BF16 or
    AMX; elsewhere bf16 is emulated and slower than fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"unknown --precision {precision!r}; choose auto, bf16 or fp32")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_native_bf16() else None


class ResourceError(ValueError):
    """The run would not fit in memory (or ran out of it)."""


# ---- memory -------------------------------------------------------------------------------------

def available_memory_bytes(device: torch.device) -> int | None:
    """Memory a run can still use: free GPU memory, or MemAvailable on the host; None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def estimate_training_bytes(mcfg: Any, *, weight_bytes: int, trainable: int, tokens: int, logits_width: int,
                            autocast_bf16: bool, extra_bytes: int = 0) -> int:
    """A rough upper estimate of one process's training memory: weights, fp32 gradients and AdamW's two
    moments of the trained parameters, activations, and `extra_bytes` (a frozen reference model).

    Activations: about 14 hidden-size and 3 FFN-width vectors per token and layer are kept for the
    backward pass (norms, q/k/v, attention output, the gated FFN's branches), plus the logits and
    their gradient in fp32.
    """
    act_bytes = 2 if autocast_bf16 else 4
    per_token = mcfg.num_layers * (14 * mcfg.hidden_size + 3 * mcfg.intermediate_size) * act_bytes
    return int(weight_bytes + trainable * 12 + extra_bytes + tokens * (per_token + logits_width * (act_bytes + 8)))


def check_memory(model: nn.Module | Any, device: torch.device, tokens: int, *, logits_width: int = 0,
                 autocast_bf16: bool = False, extra_bytes: int = 0, processes: int = 1,
                 advice: str = "lower --batch-size (raise --grad-accum) or --max-length, or train LoRA "
                               "adapters (--lora-r)") -> None:
    """Refuse a run whose estimated peak (`processes` of them on this device) exceeds 90% of what is free.
    `model`: the network to train, or the `ModelConfig` of one not built yet (all of it trained, fp32)."""
    if isinstance(model, nn.Module):
        cfg = getattr(model, "config", None) or model.backbone.config
        params = {id(p): p for p in model.parameters()}.values()
        weight_bytes = sum(p.numel() * p.element_size() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
    else:
        cfg, trainable = model, model.num_parameters()
        weight_bytes = 4 * trainable
    need = processes * estimate_training_bytes(cfg, weight_bytes=weight_bytes, trainable=trainable, tokens=tokens,
                                               logits_width=logits_width, autocast_bf16=autocast_bf16,
                                               extra_bytes=extra_bytes)
    free = available_memory_bytes(device)
    if free is not None and need > 0.9 * free:
        raise ResourceError(f"this run needs about {need / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB is free "
                            f"on {device}; {advice}")


@dataclass
class LoopConfig:
    """The loop's settings, resolved (the trainer's config fills in its defaults: `resolve_loop`)."""

    max_steps: int  # optimizer steps
    lr: float
    min_lr: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_accum: int = 1
    clip: float = 1.0  # 0 = off
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0  # optimizer steps; 0 = only at the end
    eval_at_start: bool = False  # also evaluate the untrained model (a fresh pretraining run's baseline)
    checkpoint_every: int = 0  # optimizer steps between checkpoints (0: none)
    checkpoint_at_end: bool = False  # also at the last step (pretraining keeps it to train further)
    stop_at: int | None = None  # end this session after this step, checkpointed (resume later)
    flops_per_token: float | None = None  # with peak_flops: model FLOPs utilisation in the log
    peak_flops: float | None = None


    @classmethod
    def from_settings(cls, cfg: Any, *, max_steps: int, lr: float, warmup_steps: int, **extra: Any) -> LoopConfig:
        """The loop's settings from a trainer's config (`config.TrainConfig`: the shared knobs), with
        what the trainer resolved; min_lr is lr / 10 unless --min-lr says."""
        return cls(max_steps=max_steps, lr=lr, min_lr=lr / 10 if cfg.min_lr is None else cfg.min_lr,
                   warmup_steps=warmup_steps, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2),
                   grad_accum=cfg.grad_accum, clip=cfg.grad_clip, seed=cfg.seed, log_every=cfg.log_every,
                   eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every, **extra)


@dataclass
class LoopResult:
    step: int  # the last optimizer step done
    finished: bool  # False when the session stopped early (stop_at)
    train_loss: float | None
    val: dict[str, float] | None  # the last evaluation's scores
    tokens: int  # tokens trained on, all processes (0 if batches do not count them)
    tokens_per_s: float | None
    mfu: float | None


class Checkpointer(Protocol):
    """Where a run's resume checkpoints live. `state` holds "step", "tokens", "fingerprint",
    "optimizer" (a state dict) and "params" (trained parameters by name, live tensors)."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, step: int, state: dict[str, Any]) -> None: ...


class ResumeFile:
    """A fine-tuning run's checkpoint: one file in a folder next to the output (which appears only when
    the run is done), holding the trained parameters only (a LoRA run saves its adapters)."""

    NAME = "resume.pt"

    def __init__(self, directory: Path, resume: bool):
        self.directory, self.resume = Path(directory), resume

    @classmethod
    def next_to(cls, out: str | Path, resume: bool) -> ResumeFile:
        out = Path(out)
        return cls(out.with_name(f".{out.name}.resume"), resume)

    def load(self) -> dict[str, Any] | None:
        path = self.directory / self.NAME
        if not path.is_file():
            return None
        if not self.resume:
            raise ValueError(f"{self.directory} holds an unfinished run; pass --resume to continue it, or delete it")
        return torch.load(path, map_location="cpu", weights_only=False)

    def save(self, step: int, state: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f"{self.NAME}.partial"
        state = {**state, "params": {n: p.detach().cpu().clone() for n, p in state["params"].items()}}
        torch.save(state, partial)
        os.replace(partial, self.directory / self.NAME)  # a crash while saving keeps the previous one

    def clear(self) -> None:
        """The run is published: its checkpoint is no longer needed."""
        shutil.rmtree(self.directory, ignore_errors=True)


# ---- where a process trains ----------------------------------------------------------------------

@dataclass
class Runtime:
    """Where this process trains: its place among torchrun's processes, device, autocast dtype."""

    env: DistEnv
    device: torch.device
    amp: torch.dtype | None

    @property
    def autocast_name(self) -> str:
        return str(self.amp).replace("torch.", "") if self.amp else "fp32"


@contextlib.contextmanager
def runtime(cfg: Any, env: DistEnv | None = None) -> Iterator[Runtime]:
    """Join torchrun's process group (when there is one), pick the device (--device) and autocast
    dtype (--precision), seed torch (--seed); CPU threads (--threads, default: the cores split
    between local processes) are restored afterwards."""
    env = env or DistEnv()
    device = pick_device(cfg.device, env)
    previous = init_distributed(env, device, threads=cfg.threads)
    torch.manual_seed(cfg.seed)
    try:
        yield Runtime(env, device, autocast_dtype(cfg.precision, device))
    finally:
        torch.set_num_threads(previous)


# ---- batches ------------------------------------------------------------------------------------

class StreamSource:
    """Micro-batch number -> batch over an endless, seeded stream of raw batches (lists of examples),
    collated only when used: a process skips the other processes' batches, and a resumed run skips
    what it had consumed, without building tensors for them."""

    def __init__(self, raw: Iterator[Any], collate: Callable[[Any], Any]):
        self.raw, self.collate, self.position = raw, collate, 0

    def __call__(self, index: int) -> Any:
        if index < self.position:
            raise ValueError(f"batch {index} was already consumed (the stream is at {self.position})")
        while self.position < index:
            next(self.raw)
            self.position += 1
        self.position += 1
        return self.collate(next(self.raw))


def step_seed(seed: int, step: int, rank: int) -> int:
    """The dropout seed of one optimizer step on one process."""
    return (seed * _STEP_SEED_STRIDE + step) * 1024 + rank


# ---- metrics ------------------------------------------------------------------------------------

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


# ---- processes ----------------------------------------------------------------------------------

def average_gradients(params: list[nn.Parameter], bucket_bytes: int = 32 << 20) -> None:
    """Mean of every gradient over the processes, in flat buckets (few collectives, as DDP does)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    bucket: list[torch.Tensor] = []
    size = 0

    def flush() -> None:
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in bucket:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
        bucket.clear()

    for p in params:
        if p.grad is None:  # every rank must send the same tensors, in the same order
            p.grad = torch.zeros_like(p)
        bucket.append(p.grad)
        size += p.grad.numel() * p.grad.element_size()
        if size >= bucket_bytes:
            flush()
            size = 0
    if bucket:
        flush()


def _fingerprint(cfg: LoopConfig, model: nn.Module, env: DistEnv) -> dict[str, Any]:
    """What must be equal for a checkpoint to continue this run exactly (a checkpointer that returns no
    fingerprint, as pretraining's, checks what it needs itself: there a larger --max-steps continues)."""
    return {"max_steps": cfg.max_steps, "lr": cfg.lr, "min_lr": cfg.min_lr, "warmup_steps": cfg.warmup_steps,
            "grad_accum": cfg.grad_accum, "weight_decay": cfg.weight_decay, "world_size": env.world_size,
            "trainable": sorted(n for n, p in model.named_parameters() if p.requires_grad)}


def _restore(state: dict[str, Any], cfg: LoopConfig, model: nn.Module, env: DistEnv,
             optimizer: torch.optim.Optimizer, where: str) -> None:
    saved = state.get("fingerprint")
    if saved is not None and saved != _fingerprint(cfg, model, env):
        raise ValueError(f"{where} holds a run with other settings (steps, learning rate, batching, processes "
                         f"or trained parameters); resume with the same ones, or delete it")
    trainable = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.get("params", {}).items():
            if name in trainable:
                trainable[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])


# ---- the loop -----------------------------------------------------------------------------------

def train_loop(model: nn.Module, batches: Callable[[int], Any], loss_fn: Callable[[nn.Module, Any], LossOutput],
               cfg: LoopConfig, *, device: torch.device, amp: torch.dtype | None, progress: TrainingProgress,
               env: DistEnv | None = None, evaluate: Callable[[], dict[str, float]] | None = None,
               checkpointer: Checkpointer | None = None, bar_metrics: tuple[str, ...] = ()) -> LoopResult:
    """Run optimizer steps up to `cfg.max_steps` (or `cfg.stop_at`), from a checkpoint if there is one.

    `batches(i)` gives micro-batch number i; a batch has `num_items` and may have `num_tokens`.
    Every `log_every` steps: train loss (mean over processes), lr, gradient norm, examples/s (and
    tokens/s, MFU when known) and the loss function's metrics averaged since the previous line.
    `evaluate()` (split "val") runs every `eval_every` steps and at the last step. `bar_metrics` are
    also shown on the progress bar. Only the main process saves checkpoints.
    """
    env = env or DistEnv()
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas, trainable_only=True)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    start, tokens = 0, 0
    state = checkpointer.load() if checkpointer is not None else None
    if state is not None:
        _restore(state, cfg, model, env, optimizer, getattr(checkpointer, "directory", "the checkpoint"))
        start, tokens = int(state["step"]), int(state.get("tokens", 0))
        if start:
            progress.print(f"resumed from step {start}")
    end = cfg.max_steps if cfg.stop_at is None else min(cfg.max_steps, cfg.stop_at)
    world = env.world_size
    result = LoopResult(start, start >= cfg.max_steps, None, None, tokens, None, None)

    def run_eval(step: int) -> None:
        scores = evaluate()  # type: ignore[misc]
        if scores:
            progress.log(step, scores, split="val")
            progress.print(f"step {step}: validation " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        result.val = scores
        model.train()

    if evaluate is not None and cfg.eval_at_start and start == 0:
        run_eval(0)
    model.train()
    window = MetricMeans()
    window_items = window_tokens = 0
    window_start = time.perf_counter()
    for step in range(start, end):
        torch.manual_seed(step_seed(cfg.seed, step, env.rank))  # this step's dropout, the same on resume
        lr = lr_at(step, cfg.warmup_steps, cfg.max_steps, cfg.lr, cfg.min_lr)
        for g in optimizer.param_groups:
            g["lr"] = lr
        total = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            batch = batches((step * cfg.grad_accum + micro) * world + env.rank)
            try:
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    loss, metrics = split_loss(loss_fn(model, batch))
                (loss / cfg.grad_accum).backward()
            except torch.OutOfMemoryError as e:
                raise ResourceError(f"out of memory on {device}; lower --batch-size (raise --grad-accum) "
                                    "or --max-length") from e
            total += loss.detach().float() / cfg.grad_accum
            window.add(metrics)
            window_items += batch.num_items
            window_tokens += getattr(batch, "num_tokens", 0)
            tokens += getattr(batch, "num_tokens", 0) * world
        average_gradients(params)
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip if cfg.clip > 0 else float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        result.step = done
        log_now = done % cfg.log_every == 0 or done == end
        if log_now or device.type == "cpu":  # reading the loss waits for the device: only when logging on GPUs
            loss_value = float(all_reduce_mean(total.reshape(1))[0]) if env.distributed else float(total)
            if not math.isfinite(loss_value):
                raise ValueError(f"the loss became {loss_value} at step {done}; lower --lr or check the data")
            result.train_loss = loss_value
        if log_now:
            elapsed = max(time.perf_counter() - window_start, 1e-9)
            record: dict[str, float] = {"loss": result.train_loss, "lr": lr, "grad_norm": float(norm),
                                        "examples_per_s": window_items * world / elapsed}
            shown: dict[str, float] = {}
            if window_tokens:
                tps = window_tokens * world / elapsed
                record.update(tokens=tokens, tokens_per_s=tps)
                result.tokens_per_s = shown["tokens_per_s"] = tps
                if cfg.flops_per_token and cfg.peak_flops:
                    result.mfu = shown["mfu"] = record["mfu"] = tps * cfg.flops_per_token / cfg.peak_flops
            means = window.means()
            record.update(means)
            progress.log(done, record)
            progress.update(done, loss=result.train_loss, **shown,
                            **({} if window_tokens else {"examples_per_s": record["examples_per_s"]}),
                            **{k.rsplit("/", 1)[-1]: means[k] for k in bar_metrics if k in means})
            window.reset()
            window_items = window_tokens = 0
            window_start = time.perf_counter()
        result.tokens = tokens
        if evaluate is not None and ((cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.max_steps):
            run_eval(done)
            window_start = time.perf_counter()  # evaluation time does not count against throughput
        periodic = cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done != cfg.max_steps
        if checkpointer is not None and (periodic or (done == end and (cfg.checkpoint_at_end or done != cfg.max_steps))):
            if env.is_main:
                checkpointer.save(done, {"step": done, "tokens": tokens, "fingerprint": _fingerprint(cfg, model, env),
                                         "params": trainable, "optimizer": optimizer.state_dict()})
            barrier()
            window_start = time.perf_counter()
    result.finished = result.step >= cfg.max_steps
    result.tokens = tokens
    model.eval()
    return result
