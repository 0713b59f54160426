"""Pretraining our Transformer from scratch on prepared token shards (`aigc train pretrain`).

The steps are the one training loop's (`loop.train_loop`): for each of `grad_accum` micro-batches,
forward under autocast, cross-entropy in fp32, backward; gradients averaged over torchrun's
processes; clip, warmup+cosine learning rate, AdamW. What pretraining adds around it: the model
built from the config, windows of the token shards as batches, the validation loss on fixed windows
and a short greedy sample every `eval_every` steps (and before the first), and checkpoints that are
loadable HF model directories (`checkpointing.save_checkpoint`) every `checkpoint_every` steps and
at the end, then the final model published into the run directory with its DONE marker.

Reproducibility: the batch of micro-step k of step s on rank r is window number
((s * grad_accum + k) * world_size + r) * batch_size of the seeded order (`data/sampler.py`), and the
loop seeds dropout from (seed, s, rank), so a run resumed from the checkpoint of step s computes
exactly the losses the uninterrupted run computed after step s.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from aigc.models.hf_checkpoint import model_from_hf_state_dict, read_hf_state_dict, save_hf_dir
from aigc.models.transformer import Transformer
from aigc.tokenizer import Tokenizer
from aigc.training import checkpointing as ckpt
from aigc.training.data.sampler import WindowSampler, eval_chunks
from aigc.training.data.shards import DataDir
from aigc.training.distributed import (
    DistEnv,
    all_reduce_mean,
    barrier,
    ranks_agree,
)
from aigc.training.flops import measure_peak_flops, training_flops_per_token
from aigc.training.loop import LoopConfig, Runtime, check_memory, runtime, train_loop
from aigc.training.pretrain_config import MODEL_FIELDS, PretrainConfig, model_config
from aigc.training.progress import TrainingProgress, truncate_metrics


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


def lm_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, amp: torch.dtype | None) -> torch.Tensor:
    """Next-token cross-entropy; the forward runs under autocast in `amp` (None: fp32), the loss in fp32."""
    fp32 = amp is None or amp == torch.float32
    ctx = contextlib.nullcontext() if fp32 else torch.autocast(x.device.type, dtype=amp)
    with ctx:
        logits = model(x)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


@dataclass
class WindowBatch:
    x: torch.Tensor
    y: torch.Tensor

    @property
    def num_items(self) -> int:
        return self.x.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.x.numel()


class _Checkpoints:
    """The loop's checkpointer for pretraining: each checkpoint is a loadable HF model directory with
    the optimizer state beside it; the weights are read when the model is built (`_Run`)."""

    def __init__(self, run: _Run):
        self.run = run
        self.directory = run.out

    def load(self) -> dict[str, Any] | None:
        state = self.run.state
        if state is None:
            return None
        return {"step": int(state["step"]), "tokens": int(state.get("tokens", 0)), "optimizer": state["optimizer"]}

    def save(self, step: int, state: dict[str, Any]) -> None:
        run = self.run
        trainer = {"optimizer": state["optimizer"], "config": run.cfg.to_dict(), "tokens": state["tokens"],
                   "world_size": run.env.world_size, "sampler": {"seed": run.cfg.seed, "next_step": step}}
        ckpt.save_checkpoint(run.out, step, trainer, run.write_model, keep_last=run.cfg.keep_checkpoints)


class _Run:
    """State of one pretraining session; `pretrain()` below is the entry point."""

    def __init__(self, cfg: PretrainConfig, rt: Runtime, resume: bool):
        self.cfg, self.env, self.device, self.amp = cfg, rt.env, rt.device, rt.amp
        env = rt.env
        self.out = Path(cfg.out)
        self.data = DataDir.open(cfg.data)
        self.tokenizer = Tokenizer.from_dir(self.data.tokenizer_path)
        self.start_step, self.state = self._resume_point(resume)
        self.train = WindowSampler(self.data.split("train"), cfg.block_size, cfg.seed, name="train")
        val_store = self.data.split("val")
        self.val = WindowSampler(val_store, cfg.block_size, cfg.seed, name="validation") if len(val_store) else None

        self.mcfg = model_config(cfg, self.data.vocab_size, eos_token_id=self.data.eos_token_id,
                                 pad_token_id=self.tokenizer.pad_token_id)
        # Checked before the model exists: a config too big for this machine fails at once.
        check_memory(self.mcfg, self.device, cfg.batch_size * cfg.block_size, logits_width=self.mcfg.vocab_size,
                     autocast_bf16=self.amp is not None,
                     processes=env.local_world_size if self.device.type == "cpu" else 1,
                     advice="lower --batch-size (raise --grad-accum), --block-size or the model size")
        self.model = self._build_model()
        self.compiled: torch.nn.Module = torch.compile(self.model) if cfg.compile else self.model
        self.flops_per_token = training_flops_per_token(self.mcfg, cfg.block_size)
        peak = cfg.peak_tflops * 1e12 if cfg.peak_tflops else measure_peak_flops(
            self.device, self.amp or torch.float32)
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

    def loop_config(self) -> LoopConfig:
        cfg = self.cfg
        return LoopConfig.from_settings(cfg, max_steps=cfg.max_steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                                        eval_at_start=bool(cfg.eval_every), checkpoint_at_end=True,
                                        stop_at=cfg.stop_at, flops_per_token=self.flops_per_token,
                                        peak_flops=self.peak_flops)

    # ---- batches and loss -----------------------------------------------------------------------

    def batch(self, index: int) -> WindowBatch:
        """Micro-batch number `index` of the seeded order (ranks and steps never overlap)."""
        x, y = self.train.batch(index * self.cfg.batch_size, self.cfg.batch_size)
        return WindowBatch(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))

    def loss(self, model: torch.nn.Module, batch: WindowBatch) -> torch.Tensor:
        return lm_loss(self.compiled, batch.x, batch.y, self.amp)

    def _loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return lm_loss(model, x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True), self.amp)

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

    def write_model(self, directory: Path) -> None:
        save_hf_dir(self.model, directory, tokenizer=self.tokenizer)


def pretrain(cfg: PretrainConfig, *, env: DistEnv | None = None, resume: bool = False) -> PretrainResult:
    """Train (or continue training) and publish the final model into `cfg.out`."""
    cfg.validate()
    if not cfg.data or not cfg.out:
        raise ValueError("pretraining needs --data and --out")
    with runtime(cfg, env) as rt:  # the caller's thread count is restored afterwards
        return _pretrain(cfg, rt, resume)


def _pretrain(cfg: PretrainConfig, rt: Runtime, resume: bool) -> PretrainResult:
    env = rt.env
    run = _Run(cfg, rt, resume)
    step = run.start_step
    tokens = int(run.state.get("tokens", 0)) if run.state else 0
    params = run.mcfg.num_parameters()
    done = ckpt.read_done(run.out)
    if done is not None and step >= cfg.max_steps:
        if env.is_main:
            print(f"{run.out} already finished at step {step}; raise --max-steps to train further")
        return PretrainResult(run.out, step, True, done.get("train_loss"), done.get("val_loss"), tokens, None,
                              None, params)
    if env.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        ckpt.clear_done(run.out)
        truncate_metrics(run.out / "metrics.jsonl", step if step else -1)
    barrier()

    with TrainingProgress(run.out, cfg.max_steps, start_step=step, enabled=env.is_main,
                          tensorboard=cfg.tensorboard, description="pretrain") as progress:
        resumed = f", resumed from step {step}" if step else ""
        progress.print(
            f"pretraining {params / 1e6:.2f}M parameters on {run.data.tokens('train'):,} tokens "
            f"({run.device.type}, {str(run.amp or torch.float32).replace('torch.', '')}, "
            f"{env.world_size} process(es){resumed})")

        def evaluate() -> dict[str, float]:
            """Validation loss (all ranks), the weights check across ranks, and a sample (main process)."""
            val_loss = run.evaluate()
            scores = {"loss": val_loss} if val_loss is not None else {}
            if env.distributed:
                scores["ranks_agree"] = float(ranks_agree(run.weights_checksum()))
            if env.is_main and cfg.sample_tokens:
                progress.print(f"sample: {run.sample()!r}")
            return scores

        result = train_loop(run.model, run.batch, run.loss, run.loop_config(), device=run.device, amp=run.amp,
                            progress=progress, env=env, evaluate=evaluate, checkpointer=_Checkpoints(run))
        val_loss = (result.val or {}).get("loss")
        if result.finished and val_loss is None:  # resumed at the end (e.g. a crash while publishing)
            val_loss = run.evaluate()
        if result.finished and env.is_main:
            info = {"step": result.step, "tokens": result.tokens, "train_loss": result.train_loss,
                    "val_loss": val_loss, "world_size": env.world_size, "params": params, "config": cfg.to_dict()}
            ckpt.publish_final(run.out, run.write_model, info)
        barrier()
    return PretrainResult(run.out, result.step, result.finished, result.train_loss, val_loss, result.tokens,
                          result.tokens_per_s, result.mfu, params)
