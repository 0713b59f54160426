"""`aigc convert SOURCE OUT`: a Hugging Face directory, or a GGUF file (`OUT.gguf`, any quantization).

SOURCE is a .gguf file, a HF directory or any model name. OUT ending in `.gguf` writes a llama.cpp file
whose weights are stored in `--quant` (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, or
llama-quantize's mixes Q4_K_M and Q5_K_M) with the tokenizer and chat template inside; anything else is a HF directory in `--dtype`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

GGUF_QUANTS = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M",
               "Q5_K_M")


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert a model to a Hugging Face directory or a (quantized) GGUF file")
    p.add_argument("source", help=".gguf file, HF directory or model name")
    p.add_argument("out_dir", type=Path, metavar="out",
                   help="output: a directory (config.json + model.safetensors + tokenizer) or a file ending in .gguf")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the saved weights of a HF directory (default: %(default)s)")
    p.add_argument("--quant", default="F16", type=str.upper, choices=GGUF_QUANTS,
                   help="weight format of a .gguf output (default: %(default)s)")
    p.add_argument("--models-dir", default=None)
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.cli.common import settings_from
    from aigc.models.hf_checkpoint import parse_dtype, save_hf_dir
    from aigc.models.loader import load_model
    from aigc.training.checkpointing import refuse_to_overwrite
    from aigc.training.finetune import check_output_dir

    out: Path = args.out_dir
    to_gguf = out.suffix.lower() == ".gguf"
    if to_gguf:
        refuse_to_overwrite(out, args.force)
        if out.is_dir():
            raise ValueError(f"{out} is a directory")
    else:
        check_output_dir(out, args.force)
    settings = settings_from(argparse.Namespace(models_dir=args.models_dir, dtype=None))
    loaded = load_model(args.source, models_dir=settings.models_dir, dtype="float32")
    n = sum(p.numel() for p in loaded.model.parameters())
    if to_gguf:
        _write_gguf(loaded, out, args.quant)
        print(f"wrote {out} ({loaded.config.family}, {n / 1e6:.1f}M parameters, {args.quant}, "
              f"{out.stat().st_size / 1e6:.1f} MB)")
        return 0
    save_hf_dir(loaded.model, out, tokenizer=loaded.tokenizer, dtype=parse_dtype(args.dtype))
    print(f"wrote {out} ({loaded.config.family}, {n / 1e6:.1f}M parameters, {args.dtype})")
    return 0


def _write_gguf(loaded, out: Path, quant: str) -> None:
    import os

    from aigc.models.gguf_checkpoint import write_gguf
    from aigc.models.hf_checkpoint import native_to_hf

    cfg = loaded.config
    state = native_to_hf(cfg, {k: v.detach() for k, v in loaded.model.state_dict().items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        write_gguf(partial, cfg, state, loaded.tokenizer.gguf_metadata(), quant=quant)
        os.replace(partial, out)  # a half-written file never carries the final name
    finally:
        partial.unlink(missing_ok=True)
