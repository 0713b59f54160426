"""`aigc eval poems --model M --corpus DIR`: form accuracy, rhyme, diversity, copying, held-out loss."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("poems", help="score a Chinese poetry model (forms, rhyme, distinct-2, copying, bpc)")
    p.add_argument("--model", "-m", default="aigc-poet-zh")
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--corpus", type=Path, default=Path("runs/poet-zh/corpus"),
                   help="folder with poems_heldout.jsonl and poems_train.jsonl (default: %(default)s); "
                        "build it with: aigc train recipe poet-zh --data ../shared/data --steps corpus")
    p.add_argument("--data", type=Path, default=None,
                   help="the shared data folder (holds zh-poetry/): builds --corpus first when it is missing, "
                        "with the poet-zh recipe's split")
    p.add_argument("--samples", type=int, default=100, help="poems per form (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from aigc.cli.common import settings_from
    from aigc.eval.poems import evaluate_poet

    if args.samples < 1:
        raise ValueError("--samples must be at least 1")
    if args.temperature < 0:
        raise ValueError("--temperature must be >= 0")
    settings = settings_from(argparse.Namespace(models_dir=args.models_dir, dtype=None))
    if args.data is not None and not (args.corpus / "poems_heldout.jsonl").exists():
        from aigc.training.poet import build_corpus
        from aigc.training.recipe import load_pipeline

        # The same split the committed model was trained with: held-out poems stay unseen.
        recipe = load_pipeline("poet-zh")
        c = recipe.get("corpus") or {}
        build_corpus(args.data, args.corpus, heldout_per_mille=int(c.get("heldout_per_mille", 20)),
                     seed=int(recipe.get("seed", 1234)), max_per_file=c.get("max_per_file"),
                     max_sft_pairs=c.get("max_sft_pairs"))
    report = evaluate_poet(args.model, args.corpus, samples=args.samples, temperature=args.temperature,
                           seed=args.seed, models_dir=settings.models_dir)
    table = Table(title=f"{args.model}: {args.samples} poems per form, temperature {args.temperature}")
    for col in ("form", "form accuracy", "even lines rhyme"):
        table.add_column(col)
    for form, r in report["forms"].items():
        table.add_row(form, f"{r['form_accuracy']:.0%}", f"{r['even_lines_rhyme']:.0%}")
    console = Console()
    console.print(table)
    h = report["heldout"]
    console.print(f"held-out poems: loss {h['loss']:.3f}, "
                  f"bits per character {h['bits_per_char']:.3f}")
    console.print(f"distinct-2 {report['distinct_2']:.3f}; not copied (no 8-character run from a training poem): "
                  f"{report['not_copied_share']:.0%}")
    if args.out:
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 0
