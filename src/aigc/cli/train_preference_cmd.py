"""`aigc train dpo` and `aigc train kto`: preference fine-tuning on rated replies, full or LoRA.

The data is `aigc data export-feedback --format dpo|kto`'s JSONL (TRL's conversational format).
"""

from __future__ import annotations

import argparse

from aigc.cli.train_sft_cmd import add_finetune_args, common_config


def _add(sub, objective: str, help_text: str, description: str) -> None:
    p = sub.add_parser(objective, help=help_text, description=description)
    add_finetune_args(p, lr_help="peak learning rate (default: 1e-5 with LoRA, 1e-6 full)")
    o = p.add_argument_group(objective.upper())
    o.add_argument("--beta", type=float, default=0.1,
                   help="how far the model may move from the reference (default: %(default)s)")
    if objective == "kto":
        o.add_argument("--desirable-weight", type=float, default=1.0, help="weight of 👍 replies (lambda_D)")
        o.add_argument("--undesirable-weight", type=float, default=1.0, help="weight of 👎 replies (lambda_U)")
    p.add_argument("--save-dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of a fully fine-tuned model's saved weights (default: %(default)s)")
    p.set_defaults(func=run, dtype=None, objective=objective, batch_size=4)


def register(sub) -> None:
    _add(sub, "dpo", "DPO on preference pairs ({\"prompt\", \"chosen\", \"rejected\"})",
         "Direct Preference Optimization (sigmoid loss) against a frozen reference: the base model, or with "
         "LoRA the base with the adapter switched off. Only the replies' tokens are scored.")
    _add(sub, "kto", "KTO on single rated replies ({\"prompt\", \"completion\", \"label\"})",
         "Kahneman-Tversky Optimization on liked/disliked replies against a frozen reference, with the KL "
         "reference point estimated from mismatched prompt/reply pairs in each batch.")


def run(args: argparse.Namespace) -> int:
    from aigc.training.preference import PreferenceConfig, train_preference

    cfg = PreferenceConfig(**common_config(args), save_dtype=args.save_dtype, max_length=args.max_length or 1024,
                           val_fraction=0.05 if args.val_fraction is None else args.val_fraction,
                           objective=args.objective, beta=args.beta,
                           desirable_weight=getattr(args, "desirable_weight", 1.0),
                           undesirable_weight=getattr(args, "undesirable_weight", 1.0))
    summary = train_preference(cfg, quiet=args.quiet)
    what = "LoRA adapter (PEFT format)" if cfg.lora_r else "model"
    val = summary.get("validation", {})
    extra = "".join(f", validation {k} {val[k]:.4f}" for k in ("rewards/margins", "rewards/accuracies") if k in val)
    print(f"wrote {what} to {summary['out']}: {summary['steps']} steps, final loss {summary['final_loss']:.4f}{extra}")
    return 0
