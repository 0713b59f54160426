"""Pretraining our Transformer from scratch on prepared token shards (`aigc train pretrain`).

One optimizer step: for each of `grad_accum` micro-batches, forward under autocast, cross-entropy
in fp32, backward (DDP all-reduces gradients on the last micro-batch only); then clip the gradient
norm, set the warmup+cosine learning rate, AdamW step. Every `eval_every` steps: validation loss on
fixed windows and a short greedy sample. Every `save_every` steps: an atomic checkpoint.

Reproducibility: the data of step s comes from (seed, s) (see `data/sampler.py`) and the dropout RNG
is re-seeded from (seed, s, rank) at every step, so a run resumed from the checkpoint of step s
computes exactly the losses the uninterrupted run computed after step s.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from aigc.models.config import ModelConfig
from aigc.models.hf_checkpoint import model_from_hf_state_dict, read_hf_state_dict, save_hf_dir
from aigc.models.transformer import Transformer
from aigc.tokenizer import Tokenizer
from aigc.training import checkpointing as ckpt
from aigc.training.data.sampler import WindowSampler, eval_chunks, sample_index
from aigc.training.data.shards import DataDir
from aigc.training.distributed import (
    DistEnv,
    all_reduce_mean,
    barrier,
    init_distributed,
    pick_device,
    ranks_agree,
)
from aigc.training.flops import measure_peak_flops, resolve_dtype, training_flops_per_token
from aigc.training.optim import build_optimizer, lr_at, set_lr
from aigc.training.pretrain_config import MODEL_FIELDS, PretrainConfig, estimate_memory_bytes, model_config
from aigc.training.progress import TrainingProgress, truncate_metrics

_STEP_SEED_STRIDE = 1_000_003


@dataclass
class PretrainResult:
    out: Path
    step: int
    finished: bool  # False when the session stopped early (--stop-at); resume to continue
    train_loss: float | None
    val_loss: float | None
    tokens: int
    tokens_per_s: float | None
    mfu: float | None
    params: int


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


def check_fits(mcfg: ModelConfig, cfg: PretrainConfig, device: torch.device, autocast_bf16: bool,
               processes_per_device: int) -> None:
    need = estimate_memory_bytes(mcfg, cfg.batch_size, cfg.block_size, autocast_bf16) * processes_per_device
    have = available_memory_bytes(device)
    if have is not None and need > 0.9 * have:
        raise ValueError(
            f"this config needs about {need / 2**30:.1f} GiB ({mcfg.num_parameters() / 1e6:.0f}M parameters, "
            f"batch {cfg.batch_size} x {cfg.block_size}) but only {have / 2**30:.1f} GiB is available; "
            "lower --batch-size (raise --grad-accum), --block-size or the model size")


def lm_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Next-token cross-entropy; the forward runs under autocast in `dtype`, the loss in fp32."""
    ctx = contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(x.device.type, dtype=dtype)
    with ctx:
        logits = model(x)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


class _Run:
    """State of one pretraining session; `pretrain()` below is the entry point."""

    def __init__(self, cfg: PretrainConfig, env: DistEnv, resume: bool):
        self.cfg, self.env = cfg, env
        self.out = Path(cfg.out)
        self.data = DataDir.open(cfg.data)
        self.tokenizer = Tokenizer.from_dir(self.data.tokenizer_path)
        self.device = pick_device(cfg.device, env)
        init_distributed(env, self.device, threads=cfg.threads)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.start_step, self.state = self._resume_point(resume)
        self.train = WindowSampler(self.data.split("train"), cfg.block_size, cfg.seed, name="train")
        val_store = self.data.split("val")
        self.val = WindowSampler(val_store, cfg.block_size, cfg.seed, name="validation") if len(val_store) else None

        self.mcfg = model_config(cfg, self.data.vocab_size, eos_token_id=self.data.eos_token_id,
                                 pad_token_id=self.tokenizer.pad_token_id)
        check_fits(self.mcfg, cfg, self.device, self.dtype == torch.bfloat16,
                   env.local_world_size if self.device.type == "cpu" else 1)
        self.model = self._build_model()
        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
        if self.state is not None:
            self.optimizer.load_state_dict(self.state["optimizer"])
        self.ddp_model: torch.nn.Module = self.model
        if env.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            self.ddp_model = torch.compile(self.ddp_model)
        self.tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum * env.world_size
        self.flops_per_token = training_flops_per_token(self.mcfg, cfg.block_size)
        peak = cfg.peak_tflops * 1e12 if cfg.peak_tflops else measure_peak_flops(self.device, self.dtype)
        self.peak_flops = peak * env.world_size

    # ---- set-up ---------------------------------------------------------------------------------

    def _resume_point(self, resume: bool) -> tuple[int, dict[str, Any] | None]:
        if self.env.is_main:
            ckpt.remove_stale_temp(self.out)
        barrier()
        if not resume:
            if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
                raise ValueError(f"{self.out} already holds a run; pass --resume to continue it, or choose a new --out")
            return 0, None
        latest = ckpt.latest_checkpoint(self.out)
        if latest is None:
            return 0, None
        state = ckpt.load_trainer_state(latest)
        saved = state.get("config", {})
        for name in MODEL_FIELDS:
            if name in saved and saved[name] != getattr(self.cfg, name):
                raise ValueError(f"checkpoint {latest.name} was trained with {name}={saved[name]}, "
                                 f"not {getattr(self.cfg, name)}; use the same model settings to resume")
        if saved.get("data") and Path(saved["data"]).resolve() != Path(self.cfg.data).resolve():
            raise ValueError(f"checkpoint {latest.name} was trained on {saved['data']}, not {self.cfg.data}")
        state["path"] = str(latest)
        return int(state["step"]), state

    def _build_model(self) -> Transformer:
        torch.manual_seed(self.cfg.seed)
        if self.state is not None:
            model = model_from_hf_state_dict(self.mcfg, read_hf_state_dict(Path(self.state["path"])))
            model.train()
        else:
            model = Transformer(self.mcfg)
            model.init_weights()
        return model.to(self.device)

    # ---- steps ----------------------------------------------------------------------------------

    def _loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return lm_loss(model, x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True), self.dtype)

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step (number `step`, 0-based); returns (mean loss, gradient norm) as tensors
        (reading them forces a device sync, so the loop does that only when it logs)."""
        cfg, env = self.cfg, self.env
        torch.manual_seed((cfg.seed * _STEP_SEED_STRIDE + step) * 1024 + env.rank)  # dropout of this step
        set_lr(self.optimizer, lr_at(step, cfg.warmup, cfg.max_steps, cfg.lr, cfg.final_lr))
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            first = sample_index(step, micro, env.rank, grad_accum=cfg.grad_accum, world_size=env.world_size,
                                 batch_size=cfg.batch_size)
            x, y = self.train.batch(first, cfg.batch_size)
            last = micro == cfg.grad_accum - 1
            sync = contextlib.nullcontext() if (last or not env.distributed) else self.ddp_model.no_sync()
            with sync:
                loss = self._loss(self.ddp_model, x, y)
                (loss / cfg.grad_accum).backward()
            total += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / cfg.grad_accum, grad_norm

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean loss over fixed validation windows (shared out between ranks)."""
        if self.val is None:
            return None
        self.model.eval()
        chunks = eval_chunks(self.val.n_chunks, self.cfg.eval_batches * self.cfg.batch_size)
        mine = chunks[self.env.rank :: self.env.world_size]
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        for i in range(0, len(mine), self.cfg.batch_size):
            rows = torch.stack([torch.from_numpy(self.val.window(c)) for c in mine[i : i + self.cfg.batch_size]])
            loss = self._loss(self.model, rows[:, :-1], rows[:, 1:])
            total += torch.tensor([loss.item() * len(rows), len(rows)], dtype=torch.float64, device=self.device)
        self.model.train()
        total = all_reduce_mean(total)
        return float(total[0] / total[1]) if total[1] > 0 else None

    @torch.no_grad()
    def sample(self) -> str:
        """A short greedy continuation of a fixed prompt (watch the model learn to write)."""
        from aigc.engine.offline import generate
        from aigc.generation.params import SamplingParams

        if self.cfg.sample_prompt is not None:
            prompt = self.tokenizer.encode(self.cfg.sample_prompt)
        elif self.val is not None:
            prompt = [int(t) for t in self.val.window(0)[:8]]
        else:
            prompt = [self.data.eos_token_id]
        prompt = prompt[-(self.cfg.block_size // 2):] or [self.data.eos_token_id]
        max_new = min(self.cfg.sample_tokens, self.cfg.block_size - len(prompt))
        self.model.eval()
        try:
            out = generate(self.model, [prompt], SamplingParams(max_tokens=max_new, temperature=0.0),
                           tokenizer=self.tokenizer)[0][0]
        finally:
            self.model.train()
        return self.tokenizer.decode(prompt) + "|" + (out.text or "")

    def weights_checksum(self) -> torch.Tensor:
        return torch.stack([p.detach().double().sum() for p in self.model.parameters()]).sum().reshape(1)

    def save(self, step: int, tokens: int) -> Path:
        state = {"optimizer": self.optimizer.state_dict(), "config": self.cfg.to_dict(), "tokens": tokens,
                 "world_size": self.env.world_size, "sampler": {"seed": self.cfg.seed, "next_step": step}}
        return ckpt.save_checkpoint(self.out, step, state, self._write_model, keep_last=self.cfg.keep_checkpoints)

    def _write_model(self, directory: Path) -> None:
        save_hf_dir(self.model, directory, tokenizer=self.tokenizer)


def pretrain(cfg: PretrainConfig, *, env: DistEnv | None = None, resume: bool = False) -> PretrainResult:
    """Train (or continue training) and publish the final model into `cfg.out`."""
    cfg.validate()
    if not cfg.data or not cfg.out:
        raise ValueError("pretraining needs --data and --out")
    env = env or DistEnv()
    threads = torch.get_num_threads()
    try:
        return _pretrain(cfg, env, resume)
    finally:
        torch.set_num_threads(threads)  # the caller's process is left as it was


def _pretrain(cfg: PretrainConfig, env: DistEnv, resume: bool) -> PretrainResult:
    run = _Run(cfg, env, resume)
    step = run.start_step
    tokens = int(run.state.get("tokens", 0)) if run.state else 0
    done = ckpt.read_done(run.out)
    if done is not None and step >= cfg.max_steps:
        if env.is_main:
            print(f"{run.out} already finished at step {step}; raise --max-steps to train further")
        return PretrainResult(run.out, step, True, done.get("train_loss"), done.get("val_loss"), tokens, None,
                              None, run.mcfg.num_parameters())
    if env.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        ckpt.clear_done(run.out)
        truncate_metrics(run.out / "metrics.jsonl", step if step else -1)
    barrier()

    end = cfg.max_steps if cfg.stop_at is None else min(cfg.max_steps, cfg.stop_at)
    train_loss = val_loss = tps = mfu = None
    with TrainingProgress(run.out, cfg.max_steps, start_step=step, enabled=env.is_main,
                          tensorboard=cfg.tensorboard, description="pretrain") as progress:
        resumed = f", resumed from step {step}" if step else ""
        progress.print(
            f"pretraining {run.mcfg.num_parameters() / 1e6:.2f}M parameters on {run.data.tokens('train'):,} tokens "
            f"({run.device.type}, {str(run.dtype).replace('torch.', '')}, {env.world_size} process(es){resumed})")
        if step == 0 and cfg.eval_every:
            val_loss = _evaluate_and_report(run, step, progress)  # the untrained baseline
        window_tokens, window_start = 0, time.perf_counter()
        while step < end:
            loss_t, grad_norm_t = run.train_step(step)
            step += 1
            tokens += run.tokens_per_step
            window_tokens += run.tokens_per_step
            last = step == end
            if step % cfg.log_every == 0 or last:
                train_loss, grad_norm = loss_t.item(), grad_norm_t.item()  # waits for the device
                if not math.isfinite(train_loss):
                    raise FloatingPointError(f"loss is {train_loss} at step {step}; lower --lr or check the data")
                elapsed = time.perf_counter() - window_start
                tps = window_tokens / elapsed if elapsed > 0 else None
                mfu = tps * run.flops_per_token / run.peak_flops if tps else None
                train_loss = float(all_reduce_mean(loss_t.detach().reshape(1))[0])
                progress.log(step, {"loss": train_loss, "lr": run.optimizer.param_groups[0]["lr"],
                                    "grad_norm": grad_norm, "tokens": tokens, "tokens_per_s": tps or 0.0,
                                    "mfu": mfu or 0.0})
                progress.update(step, loss=train_loss, tokens_per_s=tps, mfu=mfu)
                window_tokens, window_start = 0, time.perf_counter()
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.max_steps:
                val_loss = _evaluate_and_report(run, step, progress)
                window_start = time.perf_counter()  # evaluation time does not count against throughput
            if (cfg.save_every and step % cfg.save_every == 0) or last:
                if env.is_main:
                    run.save(step, tokens)
                barrier()
                window_start = time.perf_counter()
        finished = step >= cfg.max_steps
        if finished and val_loss is None:  # resumed at the end (e.g. a crash while publishing)
            val_loss = run.evaluate()
        if finished and env.is_main:
            info = {"step": step, "tokens": tokens, "train_loss": train_loss, "val_loss": val_loss,
                    "world_size": env.world_size, "params": run.mcfg.num_parameters(), "config": cfg.to_dict()}
            ckpt.publish_final(run.out, run._write_model, info)
        barrier()
    return PretrainResult(run.out, step, finished, train_loss, val_loss, tokens, tps, mfu,
                          run.mcfg.num_parameters())


def _evaluate_and_report(run: _Run, step: int, progress: TrainingProgress) -> float | None:
    """Validation loss (all ranks), the weights check across ranks, and a sample (main process)."""
    val_loss = run.evaluate()
    record: dict[str, Any] = {"loss": val_loss} if val_loss is not None else {}
    if run.env.distributed:
        record["ranks_agree"] = float(ranks_agree(run.weights_checksum()))
    if run.env.is_main:
        if record:
            progress.log(step, record, split="val")
        sample = run.sample() if run.cfg.sample_tokens else ""
        shown = f"{val_loss:.4f}" if val_loss is not None else "n/a"
        progress.print(f"step {step}: val loss {shown}" + (f"  sample: {sample!r}" if sample else ""))
    return val_loss
