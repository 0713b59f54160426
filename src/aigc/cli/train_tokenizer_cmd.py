"""`aigc train tokenizer`: train a byte-level BPE tokenizer (special tokens and ChatML template included)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer",
                       description="Train a byte-level BPE tokenizer on text/JSONL files and save it as a "
                                   "Hugging Face tokenizer directory; reports characters per token on "
                                   "held-out Chinese and English documents.")
    p.add_argument("--input", "-i", nargs="+", required=True, metavar="PATH", help="files or directories")
    p.add_argument("--vocab-size", type=int, required=True, help="vocabulary size, special tokens included")
    p.add_argument("--out", "-o", type=Path, required=True, help="output directory (must be new or empty)")
    p.add_argument("--format", dest="fmt", default="auto", choices=["auto", "text", "jsonl", "poems", "chat"])
    p.add_argument("--text-field", default="text", help="JSONL field holding the text (default: %(default)s)")
    p.add_argument("--doc-split", default="blank", choices=["blank", "file"])
    p.add_argument("--simplify", action="store_true", help="convert Traditional to Simplified Chinese first")
    p.add_argument("--min-frequency", type=int, default=2, help="fewest occurrences of a merge (default: %(default)s)")
    p.add_argument("--max-chars", type=int, default=None, help="train on at most this many characters")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.training.tokenizer_train import train_tokenizer

    r = train_tokenizer(args.input, args.out, args.vocab_size, fmt=args.fmt, text_field=args.text_field,
                        doc_split=args.doc_split, simplify=args.simplify, min_frequency=args.min_frequency,
                        max_chars=args.max_chars, force=args.force, show_progress=not args.quiet)
    print(f"wrote {args.out}: vocab {r.vocab_size:,}, trained on {r.documents:,} documents "
          f"({r.chars:,} characters) in {r.seconds:.1f}s")
    for script, name in (("zh", "Chinese"), ("en", "English")):
        cpt = r.chars_per_token.get(script)
        shown = f"{cpt:.2f}" if cpt is not None else "n/a (no such text in the input)"
        print(f"characters per token, {name}: {shown}")
    if r.measured_on != "held-out documents":
        print(f"(measured on {r.measured_on}: too few documents to hold some out)")
    return 0
