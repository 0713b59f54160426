"""`aigc merge`: fold a LoRA adapter (PEFT format) into its base model's weights."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("merge", help="fold a LoRA adapter into the base model and save a full model")
    p.add_argument("--adapter", required=True, type=Path, help="PEFT adapter directory (aigc train sft --lora-r)")
    p.add_argument("--base", default=None,
                   help="base model (default: base_model_name_or_path from adapter_config.json)")
    p.add_argument("--out", required=True, type=Path, help="output HF model directory")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the saved weights (default: %(default)s)")
    p.add_argument("--models-dir", type=Path, default=None, help="folder of local models")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.cli.common import settings_from
    from aigc.models.hf_checkpoint import parse_dtype, save_hf_dir
    from aigc.training.checkpointing import atomic_directory
    from aigc.training.finetune import check_output_dir
    from aigc.training.lora import load_with_adapter

    check_output_dir(args.out, args.force)
    settings = settings_from(argparse.Namespace(models_dir=args.models_dir, dtype=None))
    loaded = load_with_adapter(args.adapter, base=args.base, models_dir=settings.models_dir)
    with atomic_directory(args.out) as tmp:
        save_hf_dir(loaded.model, tmp, tokenizer=loaded.tokenizer, dtype=parse_dtype(args.dtype))
    print(f"wrote {args.out}: {loaded.name} with {args.adapter} merged ({args.dtype})")
    return 0
