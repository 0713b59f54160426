"""`aigc train pretrain`: train our Transformer from scratch on a prepared data directory.

Multi-process: `torchrun --nproc_per_node N -m aigc train pretrain ...` (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aigc.cli.train_args import add_train_args, config_from, run_processes


def register(sub) -> None:
    from aigc.training.pretrain_config import PretrainConfig

    p = sub.add_parser("pretrain", help="train a model from scratch on prepared data",
                       description="Pretrain a Llama-style model from scratch. Settings: defaults < --config "
                                   "recipe < flags. Output: an HF model directory in --out (written at the "
                                   "end, with a DONE marker), checkpoints/, metrics.jsonl, tensorboard/, "
                                   "loss.png.")
    add_train_args(p, PretrainConfig, exclude=("resume",), lora=False)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.training.pretrain import pretrain
    from aigc.training.pretrain_config import PretrainConfig

    cfg = config_from(PretrainConfig, args)
    if not cfg.data or not cfg.out:
        raise ValueError("pretraining needs --data and --out (flags or the --config file)")
    r, main = run_processes(pretrain, cfg, resume=args.resume or cfg.resume)
    if main:
        state = "finished" if r.finished else "stopped (continue with --resume)"
        val = f"{r.val_loss:.4f}" if r.val_loss is not None else "n/a"
        train = f"{r.train_loss:.4f}" if r.train_loss is not None else "n/a"
        print(f"{state} at step {r.step}: train loss {train}, val loss {val}, {r.tokens:,} tokens; "
              f"model in {Path(r.out)}")
    return 0
