"""`aigc train classify`: fine-tune a decoder as a text classifier (last-token pooling)."""

from __future__ import annotations

import argparse

from aigc.cli.train_args import add_train_args, config_from, run_processes


def register(sub) -> None:
    from aigc.training.finetune_config import ClassifyConfig

    p = sub.add_parser("classify", help="fine-tune a text classifier on labelled JSONL records",
                       description="Adds a classification head on the last token's hidden state; reports "
                                   "accuracy, macro-F1, a confusion matrix and the majority-class baseline.")
    add_train_args(p, ClassifyConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from aigc.eval.classification import render_report
    from aigc.training.classify import ClassifyConfig, train_classifier

    cfg = config_from(ClassifyConfig, args)
    (report, summary), main = run_processes(train_classifier, cfg, quiet=args.quiet)
    if main:
        if report is not None:
            Console().print(render_report(report, title="validation"))
        print(f"wrote classifier to {summary['out']} ({summary['train_examples']} training examples, "
              f"{summary['steps']} steps, {summary['train_seconds']} s)")
    return 0
