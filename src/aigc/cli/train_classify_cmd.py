"""`aigc train classify`: fine-tune a decoder as a text classifier (last-token pooling)."""

from __future__ import annotations

import argparse

from aigc.cli.train_sft_cmd import add_finetune_args, common_config


def register(sub) -> None:
    p = sub.add_parser("classify", help="fine-tune a text classifier on labelled JSONL records",
                       description="Adds a classification head on the last token's hidden state; reports "
                                   "accuracy, macro-F1, a confusion matrix and the majority-class baseline.")
    add_finetune_args(p, lr_help="peak learning rate (default: 5e-4 with LoRA, 1e-3 head only, 3e-5 full)")
    p.add_argument("--text-field", default="text", help="(default: %(default)s)")
    p.add_argument("--label-field", default="label", help="(default: %(default)s)")
    p.add_argument("--head-only", action="store_true",
                   help="train only the classification head on frozen features (fast on a CPU: one forward "
                        "pass per text, then any number of epochs)")
    p.add_argument("--max-train", type=int, default=None, help="subsample the training split to N examples")
    p.add_argument("--max-val", type=int, default=None, help="subsample the validation split to N examples")
    p.add_argument("--save-dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the saved weights (default: %(default)s)")
    p.set_defaults(func=run, dtype=None, epochs=2.0, batch_size=16)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from aigc.eval.classification import render_report
    from aigc.training.classify import ClassifyConfig, train_classifier

    cfg = ClassifyConfig(**common_config(args), text_field=args.text_field, label_field=args.label_field,
                         max_length=args.max_length or 128,
                         val_fraction=0.1 if args.val_fraction is None else args.val_fraction,
                         max_train=args.max_train, max_val=args.max_val, head_only=args.head_only,
                         save_dtype=args.save_dtype)
    report, summary = train_classifier(cfg, quiet=args.quiet)
    if report is not None:
        Console().print(render_report(report, title="validation"))
    print(f"wrote classifier to {summary['out']} ({summary['train_examples']} training examples, "
          f"{summary['steps']} steps, {summary['train_seconds']} s)")
    return 0
