"""`aigc convert model.gguf out_dir/`: write a Hugging Face directory from a GGUF file (or any model)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert a GGUF file (or any loadable model) to a Hugging Face directory")
    p.add_argument("source", help=".gguf file, HF directory or model name")
    p.add_argument("out_dir", type=Path, help="output directory (config.json + model.safetensors + tokenizer)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the saved weights (default: %(default)s)")
    p.add_argument("--models-dir", default=None)
    p.add_argument("--force", action="store_true", help="overwrite a non-empty output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.cli.common import settings_from
    from aigc.models.hf_checkpoint import parse_dtype, save_hf_dir
    from aigc.models.loader import load_model
    from aigc.training.finetune import check_output_dir

    out: Path = args.out_dir
    check_output_dir(out, args.force)
    settings = settings_from(argparse.Namespace(models_dir=args.models_dir, dtype=None))
    loaded = load_model(args.source, models_dir=settings.models_dir, dtype="float32")
    save_hf_dir(loaded.model, out, tokenizer=loaded.tokenizer, dtype=parse_dtype(args.dtype))
    n = sum(p.numel() for p in loaded.model.parameters())
    print(f"wrote {out} ({loaded.config.family}, {n / 1e6:.1f}M parameters, {args.dtype})")
    return 0
