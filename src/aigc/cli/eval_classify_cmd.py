"""`aigc eval classify`: accuracy, macro-F1 and confusion matrix of a classifier on labelled JSONL."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("classify", help="evaluate a classifier on labelled JSONL records")
    p.add_argument("--model", "-m", required=True, type=Path, help="classifier directory")
    p.add_argument("--data", required=True, type=Path, help=".jsonl or .jsonl.gz file")
    p.add_argument("--text-field", default="text")
    p.add_argument("--label-field", default="label")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N records only")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128, help="cut texts to this many tokens (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from aigc.apps.classify import Classifier
    from aigc.eval.classification import classification_report, render_report
    from aigc.models.classifier import encode_texts, predict_probs
    from aigc.training.classify import load_labeled

    texts, labels = load_labeled(args.data, args.text_field, args.label_field)
    if args.limit is not None:
        texts, labels = texts[: args.limit], labels[: args.limit]
    clf = Classifier.load(args.model)
    unknown = sorted(set(labels) - set(clf.labels))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} in {args.data} are not among the model's labels {clf.labels}")
    probs = predict_probs(clf.model, encode_texts(clf.tokenizer, texts, args.max_length), args.batch_size)
    index = {lab: i for i, lab in enumerate(clf.labels)}
    report = classification_report([index[lab] for lab in labels], probs.argmax(-1).tolist(), clf.labels)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        Console().print(render_report(report, title=str(args.data)))
    return 0
