"""Pretraining settings: defaults < recipe YAML (`recipes/NAME.yaml`) < command-line flags.

A recipe is a flat YAML mapping whose keys are the field names below (dashes or underscores), e.g.

    n_layer: 6
    n_embd: 384
    lr: 6.0e-4

Unknown keys are an error (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from aigc.models.config import ModelConfig

RECIPES_DIR = Path(__file__).resolve().parents[3] / "recipes"  # the repository's recipes/ folder
# Fields that fix the network's shape: a resumed run must use the checkpoint's values.
MODEL_FIELDS = ("family", "n_layer", "n_head", "n_kv_head", "n_embd", "ffn_size", "block_size", "vocab_multiple",
                "rope_theta")


@dataclass
class PretrainConfig:
    data: str = ""
    out: str = ""
    # model (llama family: RMSNorm, rotary positions, SwiGLU, tied input/output embeddings)
    family: str = "llama"
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None  # None = n_head (no grouped-query attention)
    n_embd: int = 256
    ffn_size: int | None = None  # None = 8/3 x n_embd rounded up to a multiple of 64
    block_size: int = 256
    dropout: float = 0.0
    rope_theta: float = 10000.0
    vocab_multiple: int = 64  # embedding rows padded to a multiple: faster matmuls, ids unchanged
    # optimisation
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float | None = None  # None = lr / 10
    warmup: int = 100
    max_steps: int = 1000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 = off
    # run
    dtype: str = "auto"  # autocast dtype: auto | bfloat16 | float32
    device: str = "auto"
    threads: int | None = None  # CPU threads per process (None = the cores divided among local processes)
    compile: bool = False
    seed: int = 1337
    eval_every: int = 200  # 0 = only at the end; a fresh run also evaluates before its first step
    eval_batches: int = 20
    save_every: int = 500  # 0 = only at the end
    keep_checkpoints: int = 2
    log_every: int = 10
    sample_tokens: int = 48  # greedy tokens generated at each evaluation (0 = none)
    sample_prompt: str | None = None  # None = the start of the validation text
    peak_tflops: float | None = None  # None = measure
    tensorboard: bool = True
    stop_at: int | None = None  # end this session after this step (checkpoint kept, resume later)

    def validate(self) -> PretrainConfig:
        positive = ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "grad_accum", "max_steps",
                    "eval_batches", "log_every", "vocab_multiple")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "eval_every", "save_every", "keep_checkpoints", "sample_tokens", "weight_decay",
                     "grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"--n-embd ({self.n_embd}) must be a multiple of --n-head ({self.n_head})")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(f"head size n_embd / n_head = {self.n_embd // self.n_head} must be even (rotary)")
        kv = self.n_kv_head or self.n_head
        if kv < 1 or self.n_head % kv:
            raise ValueError(f"--n-head ({self.n_head}) must be a multiple of --n-kv-head ({kv})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"--min-lr must be in [0, lr], got {self.min_lr}")
        if self.family not in ("llama", "qwen2", "mistral"):
            raise ValueError(f"--family must be llama, qwen2 or mistral, got {self.family!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.stop_at is not None and self.stop_at < 1:
            raise ValueError(f"--stop-at must be >= 1, got {self.stop_at}")
        return self

    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> PretrainConfig:
        return dataclasses.replace(self, **changes)


def field_names() -> list[str]:
    return [f.name for f in fields(PretrainConfig)]


def find_recipe(name: str | Path) -> Path:
    """A recipe path, or a bare name looked up in the repository's recipes/ folder."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (RECIPES_DIR / f"{name}.yaml", RECIPES_DIR / str(name)):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))) if RECIPES_DIR.is_dir() else "none"
    raise FileNotFoundError(f"recipe not found: {name} (bundled recipes: {known})")


def load_recipe(name: str | Path) -> dict[str, Any]:
    path = find_recipe(name)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe is a mapping of settings, not {type(raw).__name__}")
    known = set(field_names())
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in known or name in ("data", "out"):
            raise ValueError(f"{path}: unknown setting {key!r}")
        out[name] = value
    return out


def build_config(recipe: str | Path | None = None, **overrides: Any) -> PretrainConfig:
    """Defaults, then the recipe, then every override that is not None."""
    values: dict[str, Any] = load_recipe(recipe) if recipe else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    types = {f.name: f.type for f in fields(PretrainConfig)}
    for k, v in values.items():  # YAML may give "6e-4" as a string, ints as floats...
        t = str(types[k])
        try:
            if t.startswith("int") and not isinstance(v, bool):
                values[k] = int(v)
            elif t.startswith("float"):
                values[k] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"setting {k!r}: expected a number, got {v!r}") from None
    return PretrainConfig(**values).validate()


def model_config(cfg: PretrainConfig, vocab_size: int, *, eos_token_id: int | None,
                 pad_token_id: int | None) -> ModelConfig:
    """The network a pretraining config describes, for a tokenizer of `vocab_size` ids."""
    padded_vocab = -(-vocab_size // cfg.vocab_multiple) * cfg.vocab_multiple
    ffn = cfg.ffn_size or -(-(8 * cfg.n_embd // 3) // 64) * 64
    return ModelConfig(
        family=cfg.family, vocab_size=padded_vocab, hidden_size=cfg.n_embd, intermediate_size=ffn,
        num_layers=cfg.n_layer, num_heads=cfg.n_head, num_kv_heads=cfg.n_kv_head or cfg.n_head,
        max_position_embeddings=cfg.block_size, rope_theta=cfg.rope_theta, tie_word_embeddings=True,
        dropout=cfg.dropout, eos_token_id=eos_token_id, pad_token_id=pad_token_id, norm_eps=1e-5,
    )


def estimate_memory_bytes(mcfg: ModelConfig, batch_size: int, block_size: int, autocast_bf16: bool) -> int:
    """A rough upper estimate of training memory per process (weights, grads, AdamW, activations).

    Activations: about 22 hidden-size vectors per token and layer are kept for the backward pass
    (norms, q/k/v, attention output, the SwiGLU branches), plus the logits and their gradient.
    """
    params = mcfg.num_parameters()
    states = params * (4 + 4 + 8 + (2 if autocast_bf16 else 0))
    act_bytes = 2 if autocast_bf16 else 4
    tokens = batch_size * block_size
    per_token = mcfg.num_layers * (14 * mcfg.hidden_size + 3 * mcfg.intermediate_size) * act_bytes
    logits = mcfg.vocab_size * (act_bytes + 4 + 4)
    return int(states + tokens * (per_token + logits))
