"""ModelConfig: one dataclass that describes every architecture the network supports.

Llama, Qwen2 and Mistral are one family (RMSNorm, rotary embeddings, grouped-query attention,
SwiGLU); GPT-2 differs in norms, positions and activation. Flags in the config select the
variant, so a single network implementation serves all of them (as in litgpt).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# HF `architectures[0]` -> our family name.
HF_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "MistralForCausalLM": "mistral",
    "GPT2LMHeadModel": "gpt2",
}
FAMILY_TO_HF = {v: k for k, v in HF_ARCHITECTURES.items()}


class ConfigError(ValueError):
    """A config.json we cannot turn into a model."""


@dataclass
class ModelConfig:
    family: str = "llama"  # llama | qwen2 | mistral | gpt2
    vocab_size: int = 32000
    hidden_size: int = 512
    intermediate_size: int = 1376
    num_layers: int = 8
    num_heads: int = 8
    num_kv_heads: int = 8
    head_dim: int | None = None
    max_position_embeddings: int = 2048
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    dropout: float = 0.0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    sliding_window: int | None = None
    torch_dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)  # unknown HF keys, kept for round trips

    def __post_init__(self) -> None:
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_heads
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_attention_heads ({self.num_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_kv_heads})"
            )
        if self.family not in FAMILY_TO_HF:
            raise ConfigError(f"unknown model family {self.family!r}")

    @property
    def is_gpt2(self) -> bool:
        return self.family == "gpt2"

    @property
    def eos_token_ids(self) -> list[int]:
        if self.eos_token_id is None:
            return []
        return list(self.eos_token_id) if isinstance(self.eos_token_id, list) else [self.eos_token_id]

    def num_parameters(self, include_embeddings: bool = True) -> int:
        d, f, v = self.hidden_size, self.intermediate_size, self.vocab_size
        hd = self.head_dim or d // self.num_heads
        attn = d * hd * (self.num_heads + 2 * self.num_kv_heads) + self.num_heads * hd * d
        mlp = 2 * d * f if self.is_gpt2 else 3 * d * f
        n = self.num_layers * (attn + mlp)
        if include_embeddings:
            n += v * d * (1 if self.tie_word_embeddings else 2)
            if self.is_gpt2:
                n += self.max_position_embeddings * d
        return n

    # ---- HF config.json -------------------------------------------------------------------

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> ModelConfig:
        archs = d.get("architectures") or []
        family = None
        for a in archs:
            family = HF_ARCHITECTURES.get(a)
            if family:
                break
        if family is None:
            family = {"llama": "llama", "qwen2": "qwen2", "mistral": "mistral", "gpt2": "gpt2"}.get(
                d.get("model_type", "")
            )
        if family is None:
            raise ConfigError(
                f"unsupported architecture {archs or d.get('model_type')!r}; "
                f"supported: {', '.join(HF_ARCHITECTURES)}"
            )
        known: set[str]
        if family == "gpt2":
            n_embd = d["n_embd"]
            cfg = cls(
                family="gpt2",
                vocab_size=d["vocab_size"],
                hidden_size=n_embd,
                intermediate_size=d.get("n_inner") or 4 * n_embd,
                num_layers=d["n_layer"],
                num_heads=d["n_head"],
                num_kv_heads=d["n_head"],
                max_position_embeddings=d.get("n_positions", 1024),
                norm_eps=d.get("layer_norm_epsilon", 1e-5),
                qkv_bias=True,
                out_bias=True,
                mlp_bias=True,
                tie_word_embeddings=True,
                bos_token_id=d.get("bos_token_id"),
                eos_token_id=d.get("eos_token_id"),
                pad_token_id=d.get("pad_token_id"),
                torch_dtype=_dtype_name(d),
            )
            known = {"n_embd", "n_inner", "n_layer", "n_head", "n_positions", "layer_norm_epsilon"}
        else:
            rope = d.get("rope_parameters") or {}
            rope_theta = d.get("rope_theta", rope.get("rope_theta", 10000.0))
            scaling = d.get("rope_scaling")
            if scaling is None and rope.get("rope_type", "default") != "default":
                scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
            if scaling is not None:
                scaling = dict(scaling)
                kind = scaling.get("rope_type", scaling.get("type", "default"))
                if kind == "default":
                    scaling = None
                elif kind not in ("linear", "llama3"):
                    raise ConfigError(f"unsupported rope scaling {kind!r} (supported: linear, llama3)")
            attn_bias = bool(d.get("attention_bias", False))
            cfg = cls(
                family=family,
                vocab_size=d["vocab_size"],
                hidden_size=d["hidden_size"],
                intermediate_size=d["intermediate_size"],
                num_layers=d["num_hidden_layers"],
                num_heads=d["num_attention_heads"],
                num_kv_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
                head_dim=d.get("head_dim"),
                max_position_embeddings=d.get("max_position_embeddings", 2048),
                norm_eps=d.get("rms_norm_eps", 1e-6),
                rope_theta=float(rope_theta),
                rope_scaling=scaling,
                qkv_bias=True if family == "qwen2" else attn_bias,
                out_bias=False if family == "qwen2" else attn_bias,
                mlp_bias=bool(d.get("mlp_bias", False)),
                tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
                bos_token_id=d.get("bos_token_id"),
                eos_token_id=d.get("eos_token_id"),
                pad_token_id=d.get("pad_token_id"),
                sliding_window=d.get("sliding_window") if d.get("use_sliding_window", True) else None,
                torch_dtype=_dtype_name(d),
            )
            known = {
                "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps",
                "rope_theta", "rope_scaling", "rope_parameters", "attention_bias", "mlp_bias",
                "tie_word_embeddings", "sliding_window", "use_sliding_window",
            }
        known |= {"architectures", "model_type", "vocab_size", "bos_token_id", "eos_token_id",
                  "pad_token_id", "torch_dtype", "dtype", "transformers_version"}
        cfg.extra = {k: v for k, v in d.items() if k not in known}
        return cfg

    def to_hf_dict(self) -> dict[str, Any]:
        arch = FAMILY_TO_HF[self.family]
        d: dict[str, Any] = dict(self.extra)
        if self.is_gpt2:
            d.update(
                architectures=[arch], model_type="gpt2", vocab_size=self.vocab_size,
                n_embd=self.hidden_size, n_inner=self.intermediate_size, n_layer=self.num_layers,
                n_head=self.num_heads, n_positions=self.max_position_embeddings,
                n_ctx=self.max_position_embeddings, layer_norm_epsilon=self.norm_eps,
                activation_function="gelu_new", tie_word_embeddings=True,
            )
        else:
            d.update(
                architectures=[arch], model_type=self.family, vocab_size=self.vocab_size,
                hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
                num_key_value_heads=self.num_kv_heads, head_dim=self.head_dim,
                max_position_embeddings=self.max_position_embeddings, rms_norm_eps=self.norm_eps,
                rope_theta=self.rope_theta, rope_scaling=self.rope_scaling, hidden_act="silu",
                tie_word_embeddings=self.tie_word_embeddings, mlp_bias=self.mlp_bias,
            )
            if self.family == "llama":
                d["attention_bias"] = self.qkv_bias
            if self.family in ("qwen2", "mistral"):
                d["sliding_window"] = self.sliding_window
                if self.family == "qwen2":
                    d["use_sliding_window"] = False
        d.update(bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id,
                 torch_dtype=self.torch_dtype)
        if self.pad_token_id is not None:
            d["pad_token_id"] = self.pad_token_id
        return d

    @classmethod
    def from_json_file(cls, path: str | Path) -> ModelConfig:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read model config {path}: {e}") from e
        return cls.from_hf_dict(d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_hf_dict(), indent=2, ensure_ascii=False) + "\n")

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def _dtype_name(d: dict[str, Any]) -> str:
    name = d.get("torch_dtype") or d.get("dtype") or "float32"
    return str(name).replace("torch.", "")
