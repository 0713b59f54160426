"""Training settings, one dataclass per trainer: defaults < `--config FILE.yaml` < command-line flags.

Every knob is declared once, as a field with its default and help text (`knob`). The knobs every
trainer shares live in `TrainConfig`; a trainer's dataclass adds its own and may redeclare a shared
one to change its default (pretraining's batch of 16, classification's two epochs). The command-line
flags are generated from the fields (`add_arguments`), so the CLI cannot drift from the dataclass,
and a YAML file holds the same names (dashes or underscores):

    base: models/smollm2-135m-instruct
    lora_r: 16
    lr: 2.0e-4

Unknown keys are an error (a typo must not silently fall back to a default). The older pretraining
names (`warmup`, `save_every`, `dtype`, `clip`) are read as their new ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

RECIPES_DIR = Path(__file__).resolve().parents[3] / "recipes"  # the repository's recipes/ folder

# Names earlier releases used, read as today's.
ALIASES = {"warmup": "warmup_steps", "save_every": "checkpoint_every", "dtype": "precision", "clip": "grad_clip"}
PRECISIONS = ("auto", "bf16", "fp32")
_PRECISION_ALIASES = {"bfloat16": "bf16", "float32": "fp32"}


def knob(default: Any = MISSING, help: str = "", *, choices: tuple[str, ...] | None = None,
         cli: bool = True, required: bool = False) -> Any:
    """A setting: its default, the help its flag shows, allowed values. `cli=False`: not a flag
    (set by the command or by code). A field without a default must be given (flag or file)."""
    meta = {"help": help, "choices": choices, "cli": cli}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(kw_only=True)
class TrainConfig:
    """The knobs of the one training loop (`loop.train_loop`), shared by every trainer."""

    seed: int = knob(0, "seed of initialisation, data order and dropout")
    device: str = knob("auto", "auto (this process's GPU when CUDA is present, else the CPU), cpu, cuda, cuda:N")
    precision: str = knob("auto", "autocast: auto = bf16 on CUDA and on CPUs with native bf16, else fp32",
                          choices=PRECISIONS)
    threads: int | None = knob(None, "CPU threads per process (default: the cores divided among local processes)")
    batch_size: int = knob(8, "sequences per micro-batch and process")
    grad_accum: int = knob(1, "micro-batches per optimizer step")
    max_steps: int | None = knob(None, "optimizer steps (default: from --epochs)")
    lr: float | None = knob(None, "peak learning rate (default: the trainer's)")
    min_lr: float | None = knob(None, "final learning rate of the cosine decay (default: lr / 10)")
    warmup_steps: int | None = knob(None, "linear warmup steps (default: --warmup-fraction of the steps)")
    warmup_fraction: float = knob(0.05, "share of the steps spent warming up when --warmup-steps is not given")
    weight_decay: float = knob(0.0, "AdamW decoupled weight decay (matrices only)")
    beta1: float = knob(0.9, "AdamW beta1")
    beta2: float = knob(0.999, "AdamW beta2")
    grad_clip: float = knob(1.0, "clip the gradient norm to this (0 = off)")
    dropout: float = knob(0.0, "dropout in the network while training")
    log_every: int = knob(10, "optimizer steps between metrics lines")
    eval_every: int = knob(0, "optimizer steps between evaluations (0 = at the end)")
    checkpoint_every: int = knob(100, "optimizer steps between resume checkpoints (0 = none)")
    tensorboard: bool = knob(True, "write TensorBoard events")
    resume: bool = knob(False, "continue an interrupted run from its last checkpoint")

    def validate(self) -> TrainConfig:
        for name in ("batch_size", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every", "weight_decay", "grad_clip", "warmup_fraction"):
            if getattr(self, name) < 0:
                raise ValueError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("max_steps", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{flag(name)} must be >= 1, got {value}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.min_lr is not None and (self.min_lr < 0 or (self.lr is not None and self.min_lr > self.lr)):
            raise ValueError(f"--min-lr must be in [0, lr], got {self.min_lr}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("--beta1 and --beta2 must be in [0, 1)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown --precision {self.precision!r}; choose auto, bf16 or fp32 "
                             "(float16 would need loss scaling)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


C = TypeVar("C", bound=TrainConfig)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(hint: Any) -> Any:
    """int for `int | None`, list for `list[str] | None`, ..."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """A value from YAML or the command line as the field's type (YAML may give 6e-4 as a string)."""
    if value is None:
        return None
    kind = _base_type(hint)
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return value.lower() in ("true", "yes", "on", "1")
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is Path:
            return Path(value)
        if kind is list:
            items = value.split(",") if isinstance(value, str) else list(value)
            return [str(x).strip() for x in items if str(x).strip()]
        if kind is str:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError
            value = str(value)
            return _PRECISION_ALIASES.get(value, value) if name == "precision" else value
    except (TypeError, ValueError):
        pass
    else:
        return value
    want = {bool: "true or false", int: "a whole number", float: "a number", list: "a list"}.get(kind, "a string")
    raise ValueError(f"setting {name!r}: expected {want}, got {value!r}")


def find_config_file(name: str | Path) -> Path:
    """A settings file's path, or a bare name looked up in the repository's recipes/ folder."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (RECIPES_DIR / f"{name}.yaml", RECIPES_DIR / str(name)):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))) if RECIPES_DIR.is_dir() else "none"
    raise FileNotFoundError(f"recipe not found: {name} (a YAML file, or one of the bundled recipes: {known})")


def read_config_file(cls: type[C], name: str | Path) -> dict[str, Any]:
    """The settings a YAML file gives for `cls`, by field name (unknown keys are an error)."""
    path = find_config_file(name)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a settings file is a mapping of settings, not {type(raw).__name__}")
    known = {f.name for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in known:
            raise ValueError(f"{path}: unknown setting {key!r}")
        out[name] = value
    return out


def build(cls: type[C], config_file: str | Path | None = None, **overrides: Any) -> C:
    """Defaults, then the file, then every override that is not None; checked (`validate`)."""
    values: dict[str, Any] = read_config_file(cls, config_file) if config_file else {}
    values.update({ALIASES.get(k, k): v for k, v in overrides.items() if v is not None})
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r}")
    values = {k: _coerce(k, v, hints[k]) for k, v in values.items()}
    missing = [f.name for f in fields(cls)
               if f.default is MISSING and f.default_factory is MISSING and f.name not in values]
    if missing:
        where = f" (or `{missing[0]}:` in the --config file)" if config_file else " (or give it in a --config file)"
        raise ValueError(f"missing {flag(missing[0])}{where}")
    return cls(**values).validate()


# ---- the command line ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser, cls: type[TrainConfig], *, exclude: tuple[str, ...] = (),
                  title: str = "settings (defaults < --config file < flags)") -> None:
    """`--config FILE.yaml` and one flag per field of `cls`. A flag left out keeps the file's value or
    the default, so flags are not given argparse defaults (the dataclass holds them)."""
    parser.add_argument("--config", default=None, metavar="FILE.yaml",
                        help="settings file (YAML; same names as the flags), or a bundled recipe's name")
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    reverse = {new: old for old, new in ALIASES.items()}
    required = [f for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    for f in required + [f for f in fields(cls) if f not in required]:  # what must be given first
        if not f.metadata.get("cli", True) or f.name in exclude:
            continue
        names = [flag(f.name)] + ([flag(reverse[f.name])] if f.name in reverse else [])
        kind = _base_type(hints[f.name])
        default = None if f.default is MISSING else f.default
        shown = "" if default in (None, MISSING) or isinstance(default, bool) else f" (default: {default})"
        help_text = (f.metadata.get("help", "") + shown).replace("%", "%%")
        if f.default is MISSING and f.default_factory is MISSING:
            help_text += " (required)"
        if kind is bool:
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        else:
            choices = f.metadata.get("choices")  # checked by validate(), which also reads older names
            group.add_argument(*names, dest=f.name, default=None,
                               metavar="{" + ",".join(choices) + "}" if choices else f.name.split("_")[-1].upper(),
                               help=help_text)


def from_args(cls: type[C], args: argparse.Namespace, **fixed: Any) -> C:
    """The config the command line describes: defaults < --config file < flags < `fixed`."""
    flags = {f.name: getattr(args, f.name, None) for f in fields(cls) if f.metadata.get("cli", True)}
    return build(cls, getattr(args, "config", None), **flags, **fixed)
