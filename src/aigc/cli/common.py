"""Options shared by several subcommands: model choice and sampling parameters."""

from __future__ import annotations

import argparse
from pathlib import Path

from aigc.settings import Settings


def add_model_args(p: argparse.ArgumentParser, *, default: str | None = "smollm2-135m-instruct") -> None:
    p.add_argument("--model", "-m", default=default,
                   help="bundled alias, folder in --models-dir, local HF directory, .gguf file, hub id, "
                        "hf:ORG/REPO[/FILE.gguf|:QUANT], ollama:NAME[:TAG] or lmstudio:PUBLISHER/REPO[/FILE] "
                        "(see `aigc models`; default: %(default)s)")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="folder of local models (default: AIGC_MODELS_DIR or the repo's models/)")
    add_weight_args(p)


def add_weight_args(p: argparse.ArgumentParser) -> None:
    from aigc.models.quantized import SCHEMES

    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="dtype of float (unquantized) weights (default: float32)")
    p.add_argument("--quantize", "-q", default=None, choices=SCHEMES, type=str.lower,
                   help="weight format: auto (default) keeps a GGUF file's blocks and quantizes HF "
                        "checkpoints to q8_0 where the native kernels run; none = float weights")


def add_sampling_args(p: argparse.ArgumentParser, *, max_tokens: int = 256) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--max-tokens", type=int, default=max_tokens, help="new tokens at most (default: %(default)s)")
    g.add_argument("--temperature", "-t", type=float, default=0.7, help="0 = greedy (default: %(default)s)")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0, help="0 = off")
    g.add_argument("--min-p", type=float, default=0.0)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--presence-penalty", type=float, default=0.0)
    g.add_argument("--frequency-penalty", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=None, help="makes sampling reproducible")
    g.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop string (repeatable); never printed")


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "models_dir", None) is not None:
        overrides["models_dir"] = args.models_dir
    if getattr(args, "dtype", None):
        overrides["dtype"] = args.dtype
    if getattr(args, "quantize", None):
        overrides["quantize"] = args.quantize
    return Settings(**overrides)


def sampling_params_from(args: argparse.Namespace, **extra):
    from aigc.generation.params import SamplingParams

    params = SamplingParams(
        max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
        min_p=args.min_p, repetition_penalty=args.repetition_penalty,
        presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty,
        seed=args.seed, stop=list(args.stop), **extra,
    )
    return params.validate()


def load(args: argparse.Namespace):
    """Load the model named by --model with the edge settings."""
    from aigc.models.loader import load_model

    settings = settings_from(args)
    return load_model(args.model, models_dir=settings.models_dir, dtype=settings.dtype, quantize=settings.quantize)


def add_database_arg(p: argparse.ArgumentParser) -> None:
    """--database-url, read by `open_database`."""
    p.add_argument("--database-url", default=None,
                   help="the server's database (default: AIGC_DATABASE_URL, else sqlite:///aigc.db)")


def open_database(args: argparse.Namespace):
    """The server's app database, as `aigc serve` would open it: --database-url, else
    AIGC_DATABASE_URL, else the default (for the commands that manage users and knowledge bases)."""
    from aigc.store import Database

    return Database(args.database_url or Settings().database_url)

