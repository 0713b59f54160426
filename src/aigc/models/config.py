"""ModelConfig: one dataclass that describes every architecture the network supports.

Llama, Qwen2/Qwen3, Mistral, Gemma 2/3 and Phi-3 are one family (RMSNorm, rotary embeddings,
grouped-query attention, gated MLP) with variations: Qwen3 and Gemma 3 normalise each head's q and k,
Gemma scales the embedding, puts norms after attention and MLP too, scales norms by (1 + weight),
uses GELU gates, soft-caps logits and alternates sliding-window and global layers; Mistral and
Phi-3 may attend through a sliding window. GPT-2 differs in norms, positions and activation. Flags
in the config select the variant, so a single network implementation serves all of them (as in
litgpt).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# HF `architectures[0]` -> our family name.
HF_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "MistralForCausalLM": "mistral",
    "Gemma2ForCausalLM": "gemma2",
    "Gemma3ForCausalLM": "gemma3",
    "Phi3ForCausalLM": "phi3",
    "GPT2LMHeadModel": "gpt2",
}
FAMILY_TO_HF = {v: k for k, v in HF_ARCHITECTURES.items()}
# HF `model_type` -> family, for configs without `architectures`
HF_MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "mistral": "mistral", "gemma2": "gemma2",
                  "gemma3_text": "gemma3", "phi3": "phi3", "gpt2": "gpt2"}
FAMILY_MODEL_TYPE = {v: k for k, v in HF_MODEL_TYPES.items()}
GEMMA = ("gemma2", "gemma3")
SLIDING, FULL = "sliding_attention", "full_attention"
ACTIVATIONS = {"silu": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_tanh": "gelu_tanh"}


class ConfigError(ValueError):
    """A config.json we cannot turn into a model."""


@dataclass
class ModelConfig:
    family: str = "llama"  # llama | qwen2 | qwen3 | mistral | gemma2 | gemma3 | phi3 | gpt2
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
    sliding_window: int | None = None  # keys a query sees (itself included) on sliding layers
    layer_types: list[str] | None = None  # per layer SLIDING or FULL; None: every layer slides if a window is set
    qk_norm: bool = False  # Qwen3, Gemma 3: RMSNorm over each head's q and k before the rotation
    norm_offset: float = 0.0  # Gemma: norms scale by (offset + weight)
    sandwich_norm: bool = False  # Gemma 2/3: a norm after attention and after the MLP as well
    hidden_act: str = "silu"  # the MLP gate's activation: silu | gelu_tanh
    embed_scale: float | None = None  # Gemma: embeddings times sqrt(hidden)
    query_scale: float | None = None  # attention scale (None: head_dim ** -0.5)
    attn_softcap: float | None = None  # Gemma 2: scores -> cap * tanh(scores / cap)
    final_softcap: float | None = None  # Gemma 2: the same on the logits
    rope_local_theta: float | None = None  # Gemma 3: sliding layers rotate with this base, unscaled
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
        if self.hidden_act not in ("silu", "gelu_tanh"):
            raise ConfigError(f"unsupported activation {self.hidden_act!r} (supported: silu, gelu_tanh)")
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_layers or set(self.layer_types) - {SLIDING, FULL}:
                raise ConfigError(f"layer_types must name {SLIDING!r} or {FULL!r} for each of the "
                                  f"{self.num_layers} layers")

    def window(self, layer: int) -> int | None:
        """The sliding window of `layer` (None: it attends to every earlier position)."""
        if not self.sliding_window:
            return None
        if self.layer_types is None or self.layer_types[layer] == SLIDING:
            return int(self.sliding_window)
        return None

    @property
    def context_length(self) -> int:
        """Positions a sequence may use. LongRoPE models run with their short-context factors, which
        are exact up to original_max_position_embeddings (beyond it transformers switches factors,
        which would invalidate every cached key): longer contexts are refused, not degraded."""
        s = self.rope_scaling
        if s and s.get("rope_type") == "longrope":
            return min(self.max_position_embeddings, int(s["original_max_position_embeddings"]))
        return self.max_position_embeddings

    @property
    def has_sliding_layers(self) -> bool:
        return any(self.window(i) for i in range(self.num_layers))

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
        d = _text_part(d)
        archs = d.get("architectures") or []
        family = None
        for a in archs:
            family = HF_ARCHITECTURES.get(a)
            if family:
                break
        if family is None:
            family = HF_MODEL_TYPES.get(d.get("model_type", ""))
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
            cfg, known = _gated_family_config(cls, family, d)
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
                architectures=[arch], model_type=FAMILY_MODEL_TYPE[self.family], vocab_size=self.vocab_size,
                hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
                num_key_value_heads=self.num_kv_heads, head_dim=self.head_dim,
                max_position_embeddings=self.max_position_embeddings, rms_norm_eps=self.norm_eps,
                rope_theta=self.rope_theta, rope_scaling=self.rope_scaling,
                tie_word_embeddings=self.tie_word_embeddings,
            )
            act = "gelu_pytorch_tanh" if self.hidden_act == "gelu_tanh" else "silu"
            d["hidden_activation" if self.family in GEMMA else "hidden_act"] = act
            if self.family in ("llama", "mistral", "qwen3", "gemma2", "gemma3"):
                d["attention_bias"] = self.qkv_bias
            if self.family == "llama":
                d["mlp_bias"] = self.mlp_bias
            if self.family != "llama":
                d["sliding_window"] = self.sliding_window
            if self.family in ("qwen2", "qwen3"):
                d["use_sliding_window"] = bool(self.sliding_window)
            if self.layer_types is not None:
                d["layer_types"] = list(self.layer_types)
            if self.family in GEMMA:
                scalar = round((self.query_scale or self.head_dim ** -0.5) ** -2, 4)
                d["query_pre_attn_scalar"] = int(scalar) if scalar == int(scalar) else scalar
                d["final_logit_softcapping"] = self.final_softcap
                d["attn_logit_softcapping"] = self.attn_softcap
            if self.family == "gemma3":
                d["rope_local_base_freq"] = self.rope_local_theta
            if self.rope_scaling and self.rope_scaling.get("rope_type") == "longrope":
                d["original_max_position_embeddings"] = self.rope_scaling["original_max_position_embeddings"]
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


def _rope_settings(d: dict[str, Any], layer_type: str) -> tuple[float | None, dict[str, Any] | None]:
    """(rope theta, scaling) from a config.json, in either the per-key form (rope_theta,
    rope_scaling) or transformers 5's `rope_parameters` (flat, or keyed by layer type as Gemma 3's)."""
    rope = d.get("rope_parameters") or {}
    if layer_type in rope and isinstance(rope[layer_type], dict):
        rope = rope[layer_type]
    theta = d.get("rope_theta", rope.get("rope_theta"))
    scaling = d.get("rope_scaling")
    if scaling is None and rope.get("rope_type", "default") != "default":
        scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
    if scaling is not None:
        scaling = dict(scaling)
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        if kind == "default":
            scaling = None
        elif kind in ("longrope", "su"):  # Phi-3's LongRoPE ("su" in older configs)
            orig = scaling.get("original_max_position_embeddings", d.get("original_max_position_embeddings"))
            if orig is None or not scaling.get("short_factor"):
                raise ConfigError("longrope scaling needs short_factor and original_max_position_embeddings")
            scaling = {"rope_type": "longrope", "short_factor": [float(x) for x in scaling["short_factor"]],
                       "long_factor": [float(x) for x in scaling.get("long_factor") or scaling["short_factor"]],
                       "original_max_position_embeddings": int(orig),
                       **({"attention_factor": float(scaling["attention_factor"])}
                          if scaling.get("attention_factor") is not None else {})}
        elif kind not in ("linear", "llama3"):
            raise ConfigError(f"unsupported rope scaling {kind!r} (supported: linear, llama3, longrope)")
    return (None if theta is None else float(theta)), scaling


def _gated_family_config(cls: type[ModelConfig], family: str, d: dict[str, Any]) -> tuple[ModelConfig, set[str]]:
    """The Llama-like families: one reading of config.json with each family's defaults."""
    rope = d.get("rope_parameters") or {}
    if float(rope.get("partial_rotary_factor", d.get("partial_rotary_factor", 1.0))) != 1.0:
        raise ConfigError("partial rotary embeddings (partial_rotary_factor < 1) are not supported")
    gemma = family in GEMMA
    theta, scaling = _rope_settings(d, FULL)
    local_theta = None
    if family == "gemma3":
        local_theta = d.get("rope_local_base_freq")
        if local_theta is None:
            local_theta = _rope_settings(d, SLIDING)[0] or 10000.0
        local_theta = float(local_theta)
        theta = theta or 1000000.0
    attn_bias = bool(d.get("attention_bias", False))
    hidden, n_heads = d["hidden_size"], d["num_attention_heads"]
    n_layers = d["num_hidden_layers"]
    window = d.get("sliding_window") if d.get("use_sliding_window", True) else None
    layer_types = d.get("layer_types")
    if gemma and layer_types is None:  # older files: a pattern (Gemma 2 alternates, Gemma 3 one full in 6)
        pattern = d.get("sliding_window_pattern", d.get("_sliding_window_pattern", 2 if family == "gemma2" else 6))
        layer_types = [FULL if (i + 1) % pattern == 0 else SLIDING for i in range(n_layers)]
    if layer_types is not None and family in ("qwen2", "qwen3"):
        # Qwen's max_window_layers: only the layers from that index on slide; off unless use_sliding_window
        layer_types = None if window is None else layer_types
    if layer_types is not None and SLIDING not in layer_types:
        layer_types, window = None, None
    act = d.get("hidden_activation") or d.get("hidden_act") or ("gelu_pytorch_tanh" if gemma else "silu")
    if act not in ACTIVATIONS:
        raise ConfigError(f"unsupported activation {act!r} (supported: {', '.join(ACTIVATIONS)})")
    head_dim = d.get("head_dim") or hidden // n_heads
    cfg = cls(
        family=family,
        vocab_size=d["vocab_size"],
        hidden_size=hidden,
        intermediate_size=d["intermediate_size"],
        num_layers=n_layers,
        num_heads=n_heads,
        num_kv_heads=d.get("num_key_value_heads") or n_heads,
        head_dim=head_dim,
        max_position_embeddings=d.get("max_position_embeddings", 2048),
        norm_eps=d.get("rms_norm_eps", 1e-6),
        rope_theta=theta if theta is not None else 10000.0,
        rope_scaling=scaling,
        qkv_bias=True if family == "qwen2" else attn_bias,
        out_bias=False if family == "qwen2" else attn_bias,
        mlp_bias=bool(d.get("mlp_bias", False)),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", gemma)),
        bos_token_id=d.get("bos_token_id"),
        eos_token_id=d.get("eos_token_id"),
        pad_token_id=d.get("pad_token_id"),
        sliding_window=window,
        layer_types=list(layer_types) if window and layer_types is not None else None,
        qk_norm=family in ("qwen3", "gemma3"),
        norm_offset=1.0 if gemma else 0.0,
        sandwich_norm=gemma,
        hidden_act=ACTIVATIONS[act],
        embed_scale=float(hidden) ** 0.5 if gemma else None,
        query_scale=float(d.get("query_pre_attn_scalar", head_dim)) ** -0.5 if gemma
        else longrope_query_scale(scaling, d.get("max_position_embeddings", 2048), head_dim),
        attn_softcap=d.get("attn_logit_softcapping") if family == "gemma2" else None,
        final_softcap=d.get("final_logit_softcapping") if gemma else None,
        rope_local_theta=local_theta,
        torch_dtype=_dtype_name(d),
    )
    known = {
        "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps",
        "rope_theta", "rope_scaling", "rope_parameters", "attention_bias", "mlp_bias",
        "tie_word_embeddings", "sliding_window", "use_sliding_window", "layer_types", "hidden_act",
        "hidden_activation", "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping",
        "rope_local_base_freq", "sliding_window_pattern", "_sliding_window_pattern", "max_window_layers",
        "partial_rotary_factor", "original_max_position_embeddings",
    }
    return cfg, known


def longrope_query_scale(scaling: dict[str, Any] | None, max_positions: int, head_dim: int) -> float | None:
    """LongRoPE multiplies cos and sin by an attention factor; rotating q and k both scales their dot
    products by its square, which the attention scale can carry (no separate rotary factor needed)."""
    if not scaling or scaling.get("rope_type") != "longrope":
        return None
    factor = scaling.get("attention_factor")
    if factor is None:
        ratio = max_positions / scaling["original_max_position_embeddings"]
        factor = 1.0 if ratio <= 1.0 else math.sqrt(1 + math.log(ratio) / math.log(scaling["original_max_position_embeddings"]))
    return float(factor) ** 2 * head_dim ** -0.5


# Multimodal checkpoints whose text model is one of ours: the wrapper's architecture -> the text one.
MULTIMODAL_TEXT = {"Gemma3ForConditionalGeneration": "Gemma3ForCausalLM"}


def _text_part(d: dict[str, Any]) -> dict[str, Any]:
    """The text model's config of a multimodal checkpoint (e.g. gemma-3-4b-it); others unchanged.
    Such files store only the text config's non-default values, so transformers' config class fills
    in the rest (its defaults are the model's)."""
    text_arch = next((MULTIMODAL_TEXT[a] for a in d.get("architectures") or [] if a in MULTIMODAL_TEXT), None)
    if text_arch is None or not isinstance(d.get("text_config"), dict):
        return d
    import transformers

    text = transformers.Gemma3TextConfig(**d["text_config"]).to_dict()
    for key in ("bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype", "dtype"):
        if d.get(key) is not None:
            text[key] = d[key]
    return {**text, "architectures": [text_arch], "model_type": "gemma3_text"}
