"""`aigc train moderation`: build the moderation data, fine-tune, calibrate, evaluate, publish."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("moderation", help="train aigc-moderation (bilingual, multi-label) from our own data",
                       description="Builds the moderation examples (safety/moderation_data.py), fine-tunes a small "
                                   "base as a multi-label classifier, trains the semantic layer (an MLP over "
                                   "multilingual-e5-small vectors), calibrates a threshold per category on the "
                                   "validation split and reports recall and false positives per language and "
                                   "category on the test split and on texts written apart from the seeds.")
    p.add_argument("--out", type=Path, default=Path("runs/moderation"), help="work folder (default: %(default)s)")
    p.add_argument("--publish", type=Path, default=None,
                   help="copy the finished model here (the bundled one is models/aigc-moderation)")
    p.add_argument("--base", choices=["bilingual", "poet"], default="bilingual",
                   help="bilingual: pretrain a small base of our own first (BPE tokenizer on the shared data); "
                        "poet: the first --layers layers of aigc-poet-zh (default: %(default)s)")
    p.add_argument("--data", type=Path, default=None, help="the shared data folder (default: ../shared/data)")
    p.add_argument("--layers", type=int, default=2, help="layers of the base (default: %(default)s)")
    p.add_argument("--pretrain-steps", type=int, default=400, help="(default: %(default)s)")
    p.add_argument("--epochs", type=float, default=8.0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recalibrate", action="store_true",
                   help="keep the classifier and semantic head a previous run in --out trained; calibrate, evaluate "
                        "and publish again")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.training.moderation import train_moderation

    report = train_moderation(args.out, publish=args.publish, base=args.base, data_dir=args.data, layers=args.layers,
                              epochs=args.epochs, lr=args.lr, pretrain_steps=args.pretrain_steps, seed=args.seed,
                              recalibrate=args.recalibrate)
    print(json.dumps({lang: {k: v for k, v in figures.items() if k != "categories"}
                      for lang, figures in report["languages"].items()}, ensure_ascii=False))
    return 0
