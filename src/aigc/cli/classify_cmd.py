"""`aigc classify --model DIR "text" ...`: label texts with a fine-tuned classifier."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("classify", help="classify texts with a model from `aigc train classify`")
    p.add_argument("--model", "-m", required=True, type=Path, help="classifier directory")
    p.add_argument("texts", nargs="*", help="texts to classify (default: one per line on stdin)")
    p.add_argument("--json", action="store_true", help="print one JSON object per text")
    p.add_argument("--max-length", type=int, default=None, help="cut texts to this many tokens")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.apps.classify import Classifier

    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ValueError("no text to classify: pass texts as arguments or on stdin")
    clf = Classifier.load(args.model, max_length=args.max_length)
    results = []
    for start in range(0, len(texts), 128):
        results += clf.classify(texts[start : start + 128])
    for text, r in zip(texts, results, strict=True):
        if args.json:
            print(json.dumps({"text": text, **r}, ensure_ascii=False))
        else:
            probs = "  ".join(f"{lab}={p:.3f}" for lab, p in r["probabilities"].items())
            prefix = f"{text}\t" if len(texts) > 1 else ""
            print(f"{prefix}{r['label']}\t{probs}")
    return 0
