"""`aigc data prepare`: tokenize text files into memory-mapped shards with a validation split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("prepare", help="tokenize text/JSONL files into training shards",
                       description="Read text, gzip and JSON Lines files (poems, dialogs, plain records), "
                                   "tokenize them and write uint16/uint32 token shards, a validation split "
                                   "and manifest.json to --out.")
    p.add_argument("--input", "-i", nargs="+", required=True, metavar="PATH",
                   help="files or directories (e.g. ../shared/data/en-shakespeare)")
    p.add_argument("--out", "-o", type=Path, required=True, help="output directory (must be new or empty)")
    p.add_argument("--tokenizer", default="smollm2-135m-instruct",
                   help="tokenizer directory, .gguf file or model name (default: %(default)s)")
    p.add_argument("--format", dest="fmt", default="auto", choices=["auto", "text", "jsonl", "poems", "chat"],
                   help="input format (default: auto, from the extension and the first record)")
    p.add_argument("--text-field", default="text", help="JSONL field holding the text (default: %(default)s)")
    p.add_argument("--doc-split", default="blank", choices=["blank", "file"],
                   help="plain text: a document per blank-line-separated block, or per file (default: %(default)s)")
    p.add_argument("--simplify", action="store_true", help="convert Traditional to Simplified Chinese (OpenCC t2s)")
    p.add_argument("--val-fraction", type=float, default=0.005,
                   help="share of documents held out for validation (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1337, help="seed of the train/validation split")
    p.add_argument("--shard-tokens", type=int, default=1 << 25, help="tokens per shard file (default: %(default)s)")
    p.add_argument("--models-dir", type=Path, default=None, help="folder of local models (for --tokenizer names)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.cli.common import settings_from
    from aigc.training.data.prepare import load_tokenizer, prepare_data

    settings = settings_from(argparse.Namespace(models_dir=args.models_dir, dtype=None))
    tokenizer = load_tokenizer(args.tokenizer, models_dir=settings.models_dir)
    m = prepare_data(args.input, args.out, tokenizer, tokenizer_source=args.tokenizer, fmt=args.fmt,
                     text_field=args.text_field, doc_split=args.doc_split, simplify=args.simplify,
                     val_fraction=args.val_fraction, seed=args.seed, shard_tokens=args.shard_tokens,
                     force=args.force, show_progress=not args.quiet)
    tr, va = m["splits"]["train"], m["splits"]["val"]
    print(f"wrote {args.out}: {tr['tokens']:,} train tokens ({tr['documents']:,} documents), "
          f"{va['tokens']:,} validation tokens ({va['documents']:,} documents), {m['dtype']}, "
          f"vocab {m['vocab_size']:,}, {m['seconds']:.1f}s")
    for s in m["sources"]:
        print(json.dumps({k: s[k] for k in ("path", "format", "documents", "tokens", "chars")}, ensure_ascii=False))
    return 0
