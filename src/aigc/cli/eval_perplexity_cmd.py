"""`aigc eval perplexity`: loss, perplexity and bits per character of a model on a text."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("perplexity", help="loss, perplexity and bits per character on a text",
                       description="Evaluate a causal LM on a text file (txt/jsonl/poems/chat, gzip ok) or on "
                                   "the validation split of a prepared data directory. Bits per character "
                                   "compare models with different tokenizers.")
    p.add_argument("--model", "-m", required=True, help="model name, HF directory or .gguf file")
    p.add_argument("--data", required=True, type=Path, help="text file, or a directory from `aigc data prepare`")
    p.add_argument("--format", dest="fmt", default="auto", choices=["auto", "text", "jsonl", "poems", "chat"])
    p.add_argument("--text-field", default="text")
    p.add_argument("--simplify", action="store_true", help="convert Traditional to Simplified Chinese first")
    p.add_argument("--block-size", type=int, default=None, help="context per window (default: model's, max 1024)")
    p.add_argument("--stride", type=int, default=None,
                   help="tokens scored per window; less than --block-size gives each more context (default: all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-chars", type=int, default=None, help="evaluate on the first N characters only")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.cli.common import settings_from
    from aigc.eval.perplexity import evaluate_perplexity, load_eval_tokens
    from aigc.models.loader import load_model

    if not args.data.exists():
        raise FileNotFoundError(f"data not found: {args.data}")
    settings = settings_from(argparse.Namespace(models_dir=args.models_dir, dtype=None))
    loaded = load_model(args.model, models_dir=settings.models_dir, dtype=args.dtype)
    tokens = load_eval_tokens(args.data, loaded.tokenizer, fmt=args.fmt, text_field=args.text_field,
                              simplify=args.simplify, max_chars=args.max_chars)
    r = evaluate_perplexity(loaded.model, tokens, block_size=args.block_size, stride=args.stride,
                            batch_size=args.batch_size)
    if args.json:
        print(json.dumps(r.to_dict()))
    else:
        print(f"{args.model} on {args.data}: loss {r.loss:.4f}, perplexity {r.perplexity:.2f}, "
              f"bits/char {r.bits_per_char:.4f} ({r.tokens:,} tokens, {r.chars:,} characters)")
    return 0
