"""`aigc train sft`: supervised fine-tuning on chat records, full or LoRA (PEFT adapter)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_finetune_args(p: argparse.ArgumentParser, *, lr_help: str) -> None:
    """Options shared by `train sft`, `train dpo`, `train kto` and `train classify`."""
    p.add_argument("--base", required=True, help="model to start from: bundled alias, HF directory or .gguf")
    p.add_argument("--data", required=True, type=Path, help=".jsonl or .jsonl.gz file")
    p.add_argument("--out", required=True, type=Path, help="output directory (appears only when training is done)")
    g = p.add_argument_group("LoRA (PEFT format)")
    g.add_argument("--lora", action="store_true", help="train a LoRA adapter (rank 16 unless --lora-r says)")
    g.add_argument("--lora-r", type=int, default=0, help="LoRA rank; 0 = full fine-tuning (default)")
    g.add_argument("--lora-alpha", type=float, default=16.0, help="LoRA alpha (default: %(default)s)")
    g.add_argument("--lora-dropout", type=float, default=0.05, help="(default: %(default)s)")
    g.add_argument("--lora-targets", default="all-linear",
                   help="comma-separated HF module names (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,"
                        "down_proj) or all-linear (default)")
    t = p.add_argument_group("training")
    t.add_argument("--freeze-embeddings", action="store_true", help="do not train the token embeddings")
    t.add_argument("--freeze-layers", type=int, default=0, metavar="N", help="freeze the first N blocks")
    t.add_argument("--dropout", type=float, default=0.0, help="dropout in the network while training")
    t.add_argument("--epochs", type=float, default=1.0, help="(default: %(default)s)")
    t.add_argument("--max-steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    t.add_argument("--batch-size", type=int, default=8, help="sequences per micro-batch (default: %(default)s)")
    t.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    t.add_argument("--lr", type=float, default=None, help=lr_help)
    t.add_argument("--warmup-steps", type=int, default=None, help="(default: 5%% of the steps)")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--max-length", type=int, default=None, help="tokens per example (longer ones are cut)")
    t.add_argument("--val-fraction", type=float, default=None, help="share of the data held out for validation")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    t.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="autocast: auto = bf16 on CUDA and on CPUs with native bf16, else fp32")
    t.add_argument("--log-every", type=int, default=10, help="optimizer steps between log lines")
    t.add_argument("--eval-every", type=int, default=0, help="optimizer steps between evaluations (0: at the end)")
    t.add_argument("--checkpoint-every", type=int, default=100, metavar="N",
                   help="optimizer steps between resume checkpoints, kept next to --out until it is written "
                        "(0: none; default: %(default)s)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--models-dir", type=Path, default=None, help="folder of local models")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def common_config(args: argparse.Namespace) -> dict:
    from aigc.cli.common import settings_from

    if args.val_fraction is not None and not 0 <= args.val_fraction < 1:
        raise ValueError("--val-fraction must be in [0, 1)")
    return dict(
        base=args.base, data=args.data, out=args.out, lora_r=args.lora_r or (16 if args.lora else 0),
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout, lora_targets=args.lora_targets.split(","),
        freeze_embeddings=args.freeze_embeddings, freeze_layers=args.freeze_layers, dropout=args.dropout,
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
        lr=args.lr, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, seed=args.seed,
        device=args.device, precision=args.precision, log_every=args.log_every, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, resume=args.resume,
        force=args.force, models_dir=settings_from(args).models_dir,
    )


def register(sub) -> None:
    p = sub.add_parser("sft", help="supervised fine-tuning on {\"messages\": [...]} chat records",
                       description="Fine-tune a chat model; the loss covers only the assistant replies, rendered "
                                   "with the model's own chat template.")
    add_finetune_args(p, lr_help="peak learning rate (default: 2e-4 with LoRA, 2e-5 full)")
    p.add_argument("--messages-field", default="messages", help="record field holding the messages")
    p.add_argument("--save-dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of a fully fine-tuned model's saved weights (default: %(default)s)")
    p.set_defaults(func=run, dtype=None)


def run(args: argparse.Namespace) -> int:
    from aigc.training.sft import SFTConfig, train_sft

    cfg = SFTConfig(**common_config(args), messages_field=args.messages_field, save_dtype=args.save_dtype,
                    max_length=args.max_length or 1024,
                    val_fraction=0.05 if args.val_fraction is None else args.val_fraction)
    summary = train_sft(cfg, quiet=args.quiet)
    what = "LoRA adapter (PEFT format; fold it in with `aigc merge`)" if cfg.lora_r else "model"
    val = f", validation loss {summary['val_loss']:.4f}" if "val_loss" in summary else ""
    print(f"wrote {what} to {summary['out']}: {summary['steps']} steps, final loss {summary['final_loss']:.4f}{val}")
    return 0
