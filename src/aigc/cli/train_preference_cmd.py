"""`aigc train dpo` and `aigc train kto`: preference fine-tuning on rated replies, full or LoRA.

The data is `aigc data export-feedback --format dpo|kto`'s JSONL (TRL's conversational format).
"""

from __future__ import annotations

import argparse

from aigc.cli.train_args import add_train_args, config_from, run_processes


def _add(sub, objective: str, help_text: str, description: str) -> None:
    from aigc.training.finetune_config import PreferenceConfig

    p = sub.add_parser(objective, help=help_text, description=description)
    kto_only = ("desirable_weight", "undesirable_weight")
    add_train_args(p, PreferenceConfig, exclude=kto_only if objective == "dpo" else ())
    p.set_defaults(func=run, objective=objective)


def register(sub) -> None:
    _add(sub, "dpo", "DPO on preference pairs ({\"prompt\", \"chosen\", \"rejected\"})",
         "Direct Preference Optimization (sigmoid loss) against a frozen reference: the base model, or with "
         "LoRA the base with the adapter switched off. Only the replies' tokens are scored.")
    _add(sub, "kto", "KTO on single rated replies ({\"prompt\", \"completion\", \"label\"})",
         "Kahneman-Tversky Optimization on liked/disliked replies against a frozen reference, with the KL "
         "reference point estimated from mismatched prompt/reply pairs in each batch.")


def run(args: argparse.Namespace) -> int:
    from aigc.training.preference import PreferenceConfig, train_preference

    cfg = config_from(PreferenceConfig, args, objective=args.objective)
    summary, main = run_processes(train_preference, cfg, quiet=args.quiet)
    if main:
        what = "LoRA adapter (PEFT format)" if cfg.lora_r else "model"
        val = summary.get("validation", {})
        extra = "".join(f", validation {k} {val[k]:.4f}" for k in ("rewards/margins", "rewards/accuracies")
                        if k in val)
        print(f"wrote {what} to {summary['out']}: {summary['steps']} steps, final loss "
              f"{summary['final_loss']:.4f}{extra}")
    return 0
