"""`aigc train sft`: supervised fine-tuning on chat records, full or LoRA (PEFT adapter)."""

from __future__ import annotations

import argparse

from aigc.cli.train_args import add_train_args, config_from, run_processes


def register(sub) -> None:
    from aigc.training.finetune_config import SFTConfig

    p = sub.add_parser("sft", help="supervised fine-tuning on {\"messages\": [...]} chat records",
                       description="Fine-tune a chat model; the loss covers only the assistant replies, rendered "
                                   "with the model's own chat template. Several processes: torchrun "
                                   "--nproc_per_node N -m aigc train sft ...")
    add_train_args(p, SFTConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.training.sft import SFTConfig, train_sft

    cfg = config_from(SFTConfig, args)
    summary, main = run_processes(train_sft, cfg, quiet=args.quiet)
    if main:
        what = "LoRA adapter (PEFT format; fold it in with `aigc merge`)" if cfg.lora_r else "model"
        val = f", validation loss {summary['val_loss']:.4f}" if "val_loss" in summary else ""
        print(f"wrote {what} to {summary['out']}: {summary['steps']} steps, final loss {summary['final_loss']:.4f}"
              f"{val}")
    return 0
