"""`aigc train pretrain`: train our Transformer from scratch on a prepared data directory.

Multi-process: `torchrun --nproc_per_node N -m aigc train pretrain ...` (DDP; gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# (flag, type, help) for every setting a recipe may also give; a flag left out keeps the recipe's value.
_SETTINGS = [
    ("n-layer", int, "transformer blocks"),
    ("n-head", int, "attention heads"),
    ("n-kv-head", int, "key/value heads (grouped-query attention; default: n-head)"),
    ("n-embd", int, "hidden size"),
    ("ffn-size", int, "SwiGLU width (default: 8/3 x n-embd, rounded up to 64)"),
    ("block-size", int, "context length in tokens"),
    ("dropout", float, "dropout rate"),
    ("batch-size", int, "sequences per micro-batch and process"),
    ("grad-accum", int, "micro-batches per optimizer step"),
    ("lr", float, "peak learning rate"),
    ("min-lr", float, "final learning rate of the cosine decay (default: lr / 10)"),
    ("warmup", int, "linear warmup steps"),
    ("max-steps", int, "optimizer steps"),
    ("weight-decay", float, "AdamW decoupled weight decay (matrices only)"),
    ("grad-clip", float, "clip the gradient norm to this (0 = off)"),
    ("dtype", str, "autocast dtype: auto (bf16 where fast), bfloat16, float32"),
    ("device", str, "auto, cpu, cuda or cuda:N"),
    ("threads", int, "CPU threads per process (default: the cores divided among local processes)"),
    ("eval-every", int, "validation loss and a sample every N steps (0 = at the end)"),
    ("eval-batches", int, "validation batches per evaluation"),
    ("save-every", int, "checkpoint every N steps (0 = at the end)"),
    ("keep-checkpoints", int, "checkpoints kept (0 = all)"),
    ("log-every", int, "metrics line every N steps"),
    ("sample-tokens", int, "greedy tokens generated at each evaluation (0 = none)"),
    ("sample-prompt", str, "prompt of those samples (default: the start of the validation text)"),
    ("peak-tflops", float, "peak TFLOP/s for MFU (default: measured at start)"),
    ("seed", int, "seed of initialisation, data order and dropout"),
    ("stop-at", int, "end this session after this step without finishing (continue with --resume)"),
]


def register(sub) -> None:
    p = sub.add_parser("pretrain", help="train a model from scratch on prepared data",
                       description="Pretrain a Llama-style model from scratch. Settings: defaults < --config "
                                   "recipe < flags. Output: an HF model directory in --out (written at the "
                                   "end, with a DONE marker), checkpoints/, metrics.jsonl, tensorboard/, "
                                   "loss.png.")
    p.add_argument("--data", type=Path, required=True, help="directory written by `aigc data prepare`")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--config", default=None, metavar="RECIPE", help="recipe YAML path or name (recipes/NAME.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    g = p.add_argument_group("settings (override the recipe)")
    for flag, typ, help_text in _SETTINGS:
        g.add_argument(f"--{flag}", type=typ, default=None, metavar=typ.__name__.upper(), help=help_text)
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (slow start, faster steps)")
    g.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                   help="write TensorBoard events (default: on)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.training.distributed import DistEnv, shutdown_distributed
    from aigc.training.pretrain import pretrain
    from aigc.training.pretrain_config import build_config

    overrides = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_")) for flag, _, _ in _SETTINGS}
    overrides.update(compile=args.compile, tensorboard=args.tensorboard)
    cfg = build_config(args.config, data=str(args.data), out=str(args.out), **overrides)
    env = DistEnv.from_environ(os.environ)  # torchrun's RANK / WORLD_SIZE / LOCAL_RANK
    try:
        r = pretrain(cfg, env=env, resume=args.resume)
    finally:
        shutdown_distributed()
    if env.is_main:
        state = "finished" if r.finished else "stopped (continue with --resume)"
        val = f"{r.val_loss:.4f}" if r.val_loss is not None else "n/a"
        train = f"{r.train_loss:.4f}" if r.train_loss is not None else "n/a"
        print(f"{state} at step {r.step}: train loss {train}, val loss {val}, {r.tokens:,} tokens; "
              f"model in {Path(r.out)}")
    return 0
