"""GGUF checkpoints (llama.cpp's file format) for the Llama architecture.

`read_gguf` turns a `.gguf` file into what the rest of `models/` speaks: a `ModelConfig` and a
float32 state dict with Hugging Face Llama parameter names. `write_gguf` goes the other way
(tiny test files, exports).

Two facts about the format matter here:
- GGUF lists tensor dimensions innermost first (ggml's `ne`), so a PyTorch `[out, in]` weight is
  stored as `[in, out]`; reversing the list gives the row-major shape.
- llama.cpp's converter reorders the rows of q_proj/k_proj inside every head so that rotary
  pairs are adjacent (ggml rotates (x0, x1), (x2, x3), ...), while HF rotates (x_i, x_{i+d/2}).
  Loading must undo that permutation, or the model runs but talks nonsense.

The file header is parsed here rather than with `gguf.GGUFReader`, which builds one numpy view
per vocabulary string and needs ~5 s for a 49k-token vocabulary; this parser needs ~0.2 s.
The `gguf` package still supplies the type tables and the (de)quantization kernels.
"""

from __future__ import annotations

import math
import mmap
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from aigc.kernels.formats import K_FALLBACK
from aigc.models.config import FULL, SLIDING, ModelConfig, longrope_query_scale

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32


class GGUFError(ValueError):
    """A file we cannot read as a GGUF model, or a model we cannot write as one."""


# ---- header parsing -----------------------------------------------------------------------------

VT = gguf.GGUFValueType
# scalar value types -> struct format (little-endian)
_SCALAR_FORMATS = {
    VT.UINT8: "<B", VT.INT8: "<b", VT.UINT16: "<H", VT.INT16: "<h", VT.UINT32: "<I",
    VT.INT32: "<i", VT.FLOAT32: "<f", VT.UINT64: "<Q", VT.INT64: "<q", VT.FLOAT64: "<d",
    VT.BOOL: "<?",
}
_NUMPY_TYPES = {
    VT.UINT8: "<u1", VT.INT8: "<i1", VT.UINT16: "<u2", VT.INT16: "<i2", VT.UINT32: "<u4",
    VT.INT32: "<i4", VT.FLOAT32: "<f4", VT.UINT64: "<u8", VT.INT64: "<i8", VT.FLOAT64: "<f8",
    VT.BOOL: "?",
}


@dataclass
class GGUFTensorInfo:
    name: str
    ggml_type: gguf.GGMLQuantizationType
    shape: tuple[int, ...]  # row-major (PyTorch) order, i.e. the reverse of ggml's ne
    offset: int  # absolute byte offset in the file
    n_bytes: int


class _Cursor:
    """Reads little-endian values from a buffer, advancing an offset."""

    def __init__(self, buf: Any) -> None:
        self.buf, self.pos = buf, 0

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.scalar("<Q")
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(raw).decode("utf-8")

    def value(self, vtype: int) -> Any:
        vtype = VT(vtype)
        if vtype == VT.STRING:
            return self.string()
        if vtype in _SCALAR_FORMATS:
            return self.scalar(_SCALAR_FORMATS[vtype])
        if vtype == VT.ARRAY:
            item_type, count = VT(self.scalar("<I")), self.scalar("<Q")
            if item_type in _NUMPY_TYPES:  # numeric arrays in one read, not per element
                arr = np.frombuffer(self.buf, dtype=_NUMPY_TYPES[item_type], count=count, offset=self.pos)
                self.pos += arr.nbytes
                return arr.tolist()
            return [self.value(item_type) for _ in range(count)]
        raise GGUFError(f"unknown GGUF metadata value type {vtype}")


def _parse_header(buf: Any, path: Path) -> tuple[dict[str, Any], list[GGUFTensorInfo]]:
    if bytes(buf[:4]) != GGUF_MAGIC:
        raise GGUFError(f"{path} is not a GGUF file (bad magic)")
    cur = _Cursor(buf)
    cur.pos = 4
    version = cur.scalar("<I")
    if version & 0xFFFF == 0:
        raise GGUFError(f"{path}: big-endian GGUF files are not supported")
    if version not in (2, 3):
        raise GGUFError(f"{path}: unsupported GGUF version {version} (supported: 2, 3)")
    n_tensors, n_kv = cur.scalar("<Q"), cur.scalar("<Q")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = cur.value(cur.scalar("<I"))
    raw_infos = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.scalar("<I")
        ne = [cur.scalar("<Q") for _ in range(n_dims)]
        ggml_type, offset = cur.scalar("<I"), cur.scalar("<Q")
        raw_infos.append((name, ne, ggml_type, offset))
    alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT))
    data_start = -(-cur.pos // alignment) * alignment
    infos = []
    for name, ne, raw_type, offset in raw_infos:
        try:
            qtype = gguf.GGMLQuantizationType(raw_type)
        except ValueError:
            raise GGUFError(f"{path}: tensor {name!r} has unknown ggml type {raw_type}") from None
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n_elements = math.prod(ne)
        infos.append(GGUFTensorInfo(name, qtype, tuple(reversed(ne)), data_start + offset,
                                    n_elements // block_size * type_size))
    return metadata, infos


def _open(path: str | Path, access: int = mmap.ACCESS_READ) -> tuple[mmap.mmap, dict[str, Any], list[GGUFTensorInfo]]:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), 0, access=access)
    except (OSError, ValueError) as e:  # ValueError: mmap of an empty file
        raise GGUFError(f"cannot read GGUF file {path}: {e}") from e
    try:
        metadata, infos = _parse_header(buf, path)
    except (struct.error, UnicodeDecodeError, ValueError) as e:
        buf.close()
        if isinstance(e, GGUFError):
            raise
        raise GGUFError(f"{path}: corrupt GGUF header ({e})") from e
    return buf, metadata, infos


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """Only the key/value metadata (architecture, hyper-parameters, tokenizer, chat template)."""
    buf, metadata, _ = _open(path)
    buf.close()
    return metadata


def read_gguf_config(path: str | Path) -> ModelConfig:
    """The model config, without dequantizing any weights (cheap: reads the header only)."""
    buf, metadata, infos = _open(path)
    try:
        freqs = _rope_tensors(buf, infos)
        return config_from_gguf_metadata(metadata, {t.name: t.shape for t in infos}, freqs)
    finally:
        buf.close()


def check_gguf(path: str | Path) -> ModelConfig:
    """Everything about a model file that can fail without reading its weights (~0.2 s): the header,
    the architecture and config, every tensor inside the file (a truncated download), a tokenizer.
    Raises GGUFError with one line; returns the config."""
    buf, metadata, infos = _open(path)
    try:
        config = config_from_gguf_metadata(metadata, {t.name: t.shape for t in infos}, _rope_tensors(buf, infos))
        for info in infos:
            _check_in_file(buf, info, f"{path}: ")
    finally:
        buf.close()
    if not metadata.get("tokenizer.ggml.model") or not metadata.get("tokenizer.ggml.tokens"):
        raise GGUFError(f"{path}: the file has no tokenizer (tokenizer.ggml.model / tokenizer.ggml.tokens)")
    return config


def _check_in_file(buf: Any, info: GGUFTensorInfo, where: str = "") -> None:
    if info.offset + info.n_bytes > len(buf):
        raise GGUFError(f"{where}tensor {info.name!r} extends past the end of the file (truncated download?)")


def _tensor_array(buf: Any, info: GGUFTensorInfo) -> np.ndarray:
    """Dequantize one tensor to a float32 array of its row-major shape (always a copy)."""
    _check_in_file(buf, info)
    raw = np.frombuffer(buf, dtype=np.uint8, count=info.n_bytes, offset=info.offset)
    if info.ggml_type == gguf.GGMLQuantizationType.F32:
        return raw.view("<f4").reshape(info.shape).copy()
    if info.ggml_type == gguf.GGMLQuantizationType.F16:
        return raw.view("<f2").reshape(info.shape).astype(np.float32)
    try:  # block-quantized types (and BF16) take bytes shaped [..., bytes_per_row]
        raw = raw.reshape(gguf.quants.quant_shape_to_byte_shape(info.shape, info.ggml_type))
        return np.asarray(gguf.quants.dequantize(raw, info.ggml_type), dtype=np.float32)
    except NotImplementedError:
        raise GGUFError(
            f"tensor {info.name!r}: the installed gguf package cannot dequantize {info.ggml_type.name}"
        ) from None


# Rotary tables some files carry, folded into config.rope_scaling: Llama 3's per-frequency divisors,
# Phi-3's LongRoPE factors.
ROPE_TENSORS = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")


def _rope_tensors(buf: Any, infos: list[GGUFTensorInfo]) -> dict[str, np.ndarray]:
    return {info.name: _tensor_array(buf, info) for info in infos if info.name in ROPE_TENSORS}


# ---- config -----------------------------------------------------------------------------------


# GGUF `general.architecture` -> our family. Mistral's files say "llama" (llama.cpp converts them so).
ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma2": "gemma2",
                 "gemma3": "gemma3", "phi3": "phi3"}
SUPPORTED_ARCHITECTURES = tuple(ARCHITECTURES)
# Gemma's 27B sizes scale queries by hidden / heads, the others by the head size (as llama.cpp decides)
_GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}


def config_from_gguf_metadata(
    metadata: dict[str, Any], tensor_shapes: dict[str, tuple[int, ...]],
    rope_tensors: dict[str, np.ndarray] | None = None,
) -> ModelConfig:
    arch = metadata.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise GGUFError(
            f"unsupported GGUF architecture {arch!r} (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    family = ARCHITECTURES[arch]

    def get(key: str, default: Any = ...) -> Any:
        value = metadata.get(f"{arch}.{key}", default)
        if value is ...:
            raise GGUFError(f"GGUF metadata lacks {arch}.{key}")
        if isinstance(value, list):  # per-layer values: we need them uniform
            if len(set(value)) != 1:
                raise GGUFError(f"{arch}.{key} differs between layers ({value}); not supported")
            value = value[0]
        return value

    rope_tensors = rope_tensors or {}
    if ("rope_factors_long.weight" in tensor_shapes or "rope_factors_short.weight" in tensor_shapes) \
            and "rope_factors_short.weight" not in rope_tensors:
        raise GGUFError("LongRoPE factors (rope_factors_long/short) were not read")
    hidden, n_heads = get("embedding_length"), get("attention.head_count")
    head_dim = get("attention.key_length", hidden // n_heads)
    if get("rope.dimension_count", head_dim) != head_dim:
        raise GGUFError("partial rotary embeddings (rope.dimension_count != head dim) are not supported")
    rope_theta = _f32(get("rope.freq_base", 10000.0))
    n_layers = get("block_count")

    # The network's vocabulary is the embedding's row count; the token list usually matches it.
    tokens = metadata.get("tokenizer.ggml.tokens")
    vocab_size = len(tokens) if tokens else get("vocab_size", None)
    if "token_embd.weight" in tensor_shapes:
        vocab_size = tensor_shapes["token_embd.weight"][0]
    if vocab_size is None:
        raise GGUFError("GGUF file has neither a token list nor token_embd.weight")

    eos: int | list[int] | None = metadata.get("tokenizer.ggml.eos_token_id")
    eot = metadata.get("tokenizer.ggml.eot_token_id")  # e.g. Llama 3's <|eot_id|> ends chat turns
    if eos is not None and eot is not None and eot != eos:
        eos = [eos, eot]

    window = get("attention.sliding_window", None)
    layer_types = _layer_types(metadata.get(f"{arch}.attention.sliding_window_pattern"), family, n_layers) \
        if window else None
    if family == "llama" and window:
        family = "mistral"  # a llama file with a window is Mistral 7B v0.1 (HF calls it so)
    gemma = family in ("gemma2", "gemma3")
    rope_scaling = _rope_scaling(get, rope_tensors, head_dim, rope_theta)
    scale = longrope_query_scale(rope_scaling, get("context_length", 2048), head_dim)
    if gemma:
        scalar = hidden / n_heads if n_layers == _GEMMA_27B_LAYERS[family] else head_dim
        scale = float(scalar) ** -0.5
    return ModelConfig(
        family=family,
        vocab_size=int(vocab_size),
        hidden_size=hidden,
        intermediate_size=get("feed_forward_length"),
        num_layers=n_layers,
        num_heads=n_heads,
        num_kv_heads=get("attention.head_count_kv", n_heads),
        head_dim=head_dim,
        max_position_embeddings=get("context_length", 2048),
        norm_eps=_f32(get("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=rope_theta,
        rope_scaling=rope_scaling,
        qkv_bias="blk.0.attn_q.bias" in tensor_shapes or "blk.0.attn_qkv.bias" in tensor_shapes,
        out_bias="blk.0.attn_output.bias" in tensor_shapes,
        mlp_bias="blk.0.ffn_down.bias" in tensor_shapes,
        tie_word_embeddings="output.weight" not in tensor_shapes,
        bos_token_id=metadata.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=eos,
        pad_token_id=metadata.get("tokenizer.ggml.padding_token_id"),
        sliding_window=int(window) if window else None,
        layer_types=layer_types,
        qk_norm="blk.0.attn_q_norm.weight" in tensor_shapes,
        norm_offset=1.0 if gemma else 0.0,
        sandwich_norm=gemma,
        hidden_act="gelu_tanh" if gemma else "silu",
        embed_scale=float(hidden) ** 0.5 if gemma else None,
        query_scale=scale,
        attn_softcap=_f32(get("attn_logit_softcapping", None)) if family == "gemma2" else None,
        final_softcap=_f32(get("final_logit_softcapping", None)) if family == "gemma2" else None,
        rope_local_theta=_f32(get("rope.freq_base_swa", 10000.0)) if family == "gemma3" else None,
        torch_dtype="float32",
    )


def _layer_types(pattern: Any, family: str, n_layers: int) -> list[str] | None:
    """Which layers slide. The file may say (a period n: all but every n-th; or one flag per layer);
    else Gemma 2 alternates and Gemma 3 has one global layer in six (llama.cpp's defaults), and other
    families slide everywhere (None)."""
    if isinstance(pattern, list):
        if len(pattern) != n_layers:
            raise GGUFError(f"sliding_window_pattern has {len(pattern)} entries for {n_layers} layers")
        return [SLIDING if p else FULL for p in pattern]
    period = pattern if isinstance(pattern, int) else {"gemma2": 2, "gemma3": 6}.get(family)
    if not period or period <= 1:
        return None
    return [SLIDING if i % period < period - 1 else FULL for i in range(n_layers)]


def _f32(x: Any) -> Any:
    """GGUF stores float32: 1e-5 comes back as 9.99999974e-06; give the shortest decimal back."""
    return None if x is None else float(str(np.float32(x)))


# Llama 3.x's rope scaling constants; GGUF stores only the per-frequency factors they produce.
_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def _rope_scaling(get: Any, rope_tensors: dict[str, np.ndarray], head_dim: int, theta: float) -> dict | None:
    kind = get("rope.scaling.type", None)
    factor = get("rope.scaling.factor", None)
    if kind is None and get("rope.scale_linear", None) is not None:  # older files
        kind, factor = "linear", get("rope.scale_linear")
    if "rope_factors_short.weight" in rope_tensors:  # Phi-3 LongRoPE
        short = rope_tensors["rope_factors_short.weight"]
        long = rope_tensors.get("rope_factors_long.weight", short)
        orig = get("rope.scaling.original_context_length", None) or get("context_length")
        scaling = {"rope_type": "longrope", "short_factor": [_f32(x) for x in short],
                   "long_factor": [_f32(x) for x in long], "original_max_position_embeddings": int(orig)}
        attn_factor = get("rope.scaling.attn_factor", None)
        if attn_factor is not None:
            scaling["attention_factor"] = _f32(attn_factor)
        return scaling
    rope_freqs = rope_tensors.get("rope_freqs.weight")
    if rope_freqs is not None:
        scaling = {"rope_type": "llama3", "factor": float(rope_freqs.max()), **_LLAMA3_ROPE}
        if not np.allclose(llama3_rope_freq_factors(scaling, head_dim, theta), rope_freqs, rtol=1e-4):
            raise GGUFError("rope_freqs.weight does not match Llama 3 rope scaling; not supported")
        return scaling
    if kind in (None, "none") or (kind == "linear" and factor in (None, 1.0)):
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": _f32(factor)}
    raise GGUFError(f"unsupported rope scaling {kind!r} in GGUF (supported: linear, llama3)")


def llama3_rope_freq_factors(scaling: dict[str, Any], head_dim: int, theta: float) -> np.ndarray:
    """Divisors of each rotary frequency under Llama 3 scaling (what llama.cpp stores as rope_freqs)."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_ctx = scaling["original_max_position_embeddings"]
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * math.pi / inv_freq
    smooth = np.clip((old_ctx / wavelen - low) / (high - low), 0.0, 1.0)
    # smooth=1 (short waves): unchanged; smooth=0 (long waves): divided by factor
    return (1.0 / ((1 - smooth) / factor + smooth)).astype(np.float32)


# ---- names and the rotary permutation --------------------------------------------------------

_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_ATTENTION_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
}
_MLP_NAMES = {"ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
_QK_NORM_NAMES = {"attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}
# per family: GGUF layer tensor -> HF name (llama.cpp's names, as the gguf package lists them)
_LLAMA_LAYER = {**_ATTENTION_NAMES, "ffn_norm": "post_attention_layernorm", **_MLP_NAMES}
_GEMMA_LAYER = {**_ATTENTION_NAMES, "post_attention_norm": "post_attention_layernorm",
                "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm", **_MLP_NAMES}
LAYER_NAMES = {
    "llama": _LLAMA_LAYER,
    "mistral": _LLAMA_LAYER,
    "qwen2": _LLAMA_LAYER,
    "qwen3": {**_LLAMA_LAYER, **_QK_NORM_NAMES},
    "gemma2": _GEMMA_LAYER,
    "gemma3": {**_GEMMA_LAYER, **_QK_NORM_NAMES},
    # Phi-3 keeps q/k/v in one tensor and gate/up in one (ffn_up holds both, gate first)
    "phi3": {"attn_norm": "input_layernorm", "attn_qkv": "self_attn.qkv_proj", "attn_output": "self_attn.o_proj",
             "ffn_norm": "post_attention_layernorm", "ffn_up": "mlp.gate_up_proj", "ffn_down": "mlp.down_proj"},
}
# The GGUF architecture each family is written as: llama.cpp converts Mistral to "llama".
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma2": "gemma2",
             "gemma3": "gemma3", "phi3": "phi3"}
_GGUF_NAME = re.compile(r"^(?:blk\.(\d+)\.)?(\w+)\.(weight|bias)$")
_HF_NAME = re.compile(r"^(?:model\.layers\.(\d+)\.)?([\w.]+)\.(weight|bias)$")
_HF_GLOBAL_TO_GGUF = {v: k for k, v in _GLOBAL_NAMES.items()}


def gguf_to_hf_name(name: str, family: str = "llama") -> str:
    m = _GGUF_NAME.match(name)
    layer_names = LAYER_NAMES[family]
    if m:
        layer, part, kind = m.groups()
        if layer is None and part in _GLOBAL_NAMES:
            return f"{_GLOBAL_NAMES[part]}.{kind}"
        if layer is not None and part in layer_names:
            return f"model.layers.{layer}.{layer_names[part]}.{kind}"
    raise GGUFError(f"unexpected tensor {name!r} in a {GGUF_ARCH[family]} GGUF file")


def hf_to_gguf_name(name: str, family: str = "llama") -> str:
    m = _HF_NAME.match(name)
    to_gguf = {v: k for k, v in LAYER_NAMES[family].items()}
    if m:
        layer, part, kind = m.groups()
        if layer is None and part in _HF_GLOBAL_TO_GGUF:
            return f"{_HF_GLOBAL_TO_GGUF[part]}.{kind}"
        if layer is not None and part in to_gguf:
            return f"blk.{layer}.{to_gguf[part]}.{kind}"
    raise GGUFError(f"no GGUF name for parameter {name!r} of a {family} model")


def _norm_shift(gguf_name: str, config: ModelConfig) -> float:
    """What llama.cpp added to a norm weight: Gemma's files store (1 + w), its checkpoints w."""
    return config.norm_offset if gguf_name.endswith("norm.weight") else 0.0


def permute_for_gguf(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF q/k rows (per head: first halves, then second halves) -> ggml's interleaved pairs."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_from_gguf(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of `permute_for_gguf`."""
    return w.reshape(n_heads, w.shape[0] // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _rotary_heads(gguf_name: str, config: ModelConfig) -> int | None:
    """Head count to (un)permute with, for q/k tensors of "llama" files; None for everything else.
    Only llama.cpp's Llama converter reorders rows (its "llama" rope rotates adjacent pairs); Qwen,
    Gemma and Phi-3 files use the NeoX rotation, which is HF's, and keep HF's rows (transformers'
    GGUF loader undoes the permutation for "llama" only, too)."""
    if GGUF_ARCH[config.family] != "llama":
        return None
    part = gguf_name.split(".")[-2]
    return {"attn_q": config.num_heads, "attn_k": config.num_kv_heads}.get(part)


# ---- reading ----------------------------------------------------------------------------------


def read_gguf(path: str | Path, packed: bool = False) -> tuple[ModelConfig, dict[str, Any], dict[str, Any]]:
    """Load a GGUF model file (see SUPPORTED_ARCHITECTURES): (config, HF-named state dict, metadata).

    The metadata holds every key/value of the file decoded to Python values, including the
    tokenizer (`tokenizer.ggml.tokens`, `.merges`, `.token_type`) and `tokenizer.chat_template`.
    Tied models (no `output.weight`) have no `lm_head.weight` entry, as in HF checkpoints.

    packed=False: every tensor dequantized to float32. packed=True: 2-D weights stay in their stored
    blocks as `kernels.PackedWeight` (read from a private memory map of the file: pages are shared
    with the page cache, nothing is converted); formats the kernels do not read (Q2_K, Q3_K, IQ*)
    are dequantized and kept as F16.
    """
    if packed:
        return _read_gguf_packed(Path(path))
    buf, metadata, infos = _open(path)
    try:
        config = config_from_gguf_metadata(metadata, {t.name: t.shape for t in infos}, _rope_tensors(buf, infos))
        state: dict[str, torch.Tensor] = {}
        for info in infos:
            if info.name in ROPE_TENSORS:  # folded into config.rope_scaling
                continue
            w = _tensor_array(buf, info)
            n_heads = _rotary_heads(info.name, config)
            if n_heads is not None:
                w = np.ascontiguousarray(unpermute_from_gguf(w, n_heads))
            w -= _norm_shift(info.name, config)
            state[gguf_to_hf_name(info.name, config.family)] = torch.from_numpy(w)
    finally:
        try:
            buf.close()
        except BufferError:  # a numpy view still alive (only on error paths); the GC unmaps it
            pass
    _check_complete(config, state, path)
    return config, state, metadata


def _read_gguf_packed(path: Path) -> tuple[ModelConfig, dict[str, Any], dict[str, Any]]:
    from aigc.kernels import FORMATS, PackedWeight

    # a copy-on-write map: torch wants writable memory; we never write it
    cow, metadata, infos = _open(path, access=mmap.ACCESS_COPY)
    config = config_from_gguf_metadata(metadata, {t.name: t.shape for t in infos}, _rope_tensors(cow, infos))
    state: dict[str, Any] = {}
    for info in infos:
        if info.name in ROPE_TENSORS:
            continue
        _check_in_file(cow, info)
        n_heads = _rotary_heads(info.name, config)
        fmt = FORMATS.get(info.ggml_type.name)
        if len(info.shape) != 2 or fmt is None or fmt.name == "F32":
            w = _tensor_array(cow, info)
            if n_heads is not None:
                w = np.ascontiguousarray(unpermute_from_gguf(w, n_heads))
            w -= _norm_shift(info.name, config)
            t = torch.from_numpy(w)
            if len(info.shape) == 2 and fmt is None:  # a format without kernels: keep it as F16
                t = PackedWeight(t.to(torch.float16).contiguous(), "F16", *info.shape)
            state[gguf_to_hf_name(info.name, config.family)] = t
            continue
        rows, cols = info.shape
        raw = torch.frombuffer(cow, dtype=torch.uint8, count=info.n_bytes, offset=info.offset)
        if n_heads is not None:  # whole rows move: the blocks inside a row stay as stored
            raw = torch.from_numpy(unpermute_from_gguf(raw.view(rows, -1).numpy(), n_heads).copy()).view(-1)
        if fmt.name in ("F16", "BF16"):
            raw = raw.view(torch.float16 if fmt.name == "F16" else torch.bfloat16)
        # owner: the map lives as long as any weight that reads it
        state[gguf_to_hf_name(info.name, config.family)] = PackedWeight(raw, fmt, rows, cols, owner=cow)
    _check_complete(config, state, path)
    return config, state, metadata


def _check_complete(config: ModelConfig, state: dict[str, torch.Tensor], path: str | Path) -> None:
    expected = ["model.embed_tokens.weight", "model.norm.weight"]
    for i in range(config.num_layers):
        expected += [f"model.layers.{i}.{part}.weight" for part in LAYER_NAMES[config.family].values()]
    missing = [k for k in expected if k not in state]
    if missing:
        raise GGUFError(f"{path}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")


# ---- writing ----------------------------------------------------------------------------------


def write_gguf(
    path: str | Path,
    config: ModelConfig,
    hf_state_dict: dict[str, torch.Tensor],
    tokenizer_metadata: dict[str, Any] | None = None,
    quant: str = "F32",
) -> None:
    """Write a GGUF file from an HF-named state dict, as llama.cpp's converter would (its
    architecture names, tensor names, the q/k row order of "llama" files, Gemma's 1 + w norms).

    `quant` is a ggml type name (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K):
    2-D weights are stored in it, norms and biases stay F32 (as llama.cpp does). K-format weights
    whose rows are not multiples of 256 take Q5_0/Q5_1/Q8_0 instead (as llama-quantize does); rows
    no block fits stay F32. `tokenizer_metadata` holds extra GGUF keys, e.g.
    `tokenizer.ggml.tokens` or `tokenizer.chat_template`.
    """
    if config.family not in GGUF_ARCH:
        raise GGUFError(f"{config.family} models cannot be written as GGUF "
                        f"(supported: {', '.join(GGUF_ARCH)})")
    mix = MIXES.get(quant.upper())
    try:
        qtype = gguf.GGMLQuantizationType[mix[0] if mix else quant.upper()]
    except KeyError:
        raise GGUFError(f"unknown GGUF quantization {quant!r}") from None

    if config.family in _GEMMA_27B_LAYERS:  # GGUF has no key for it: readers infer it as llama.cpp does
        scalar = config.hidden_size / config.num_heads if config.num_layers == _GEMMA_27B_LAYERS[config.family] \
            else config.head_dim
        if abs((config.query_scale or 0.0) - float(scalar) ** -0.5) > 1e-6:
            raise GGUFError(f"this {config.family} model scales queries by {config.query_scale}, which a GGUF "
                            f"file cannot say (llama.cpp assumes {float(scalar) ** -0.5:.6g})")
    arch = GGUF_ARCH[config.family]
    writer = gguf.GGUFWriter(str(path), arch)
    head_dim = config.head_dim or config.hidden_size // config.num_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_heads)
    writer.add_head_count_kv(config.num_kv_heads)
    if head_dim != config.hidden_size // config.num_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)
    if config.sliding_window:
        writer.add_sliding_window(int(config.sliding_window))
        if config.layer_types is not None:
            writer.add_sliding_window_pattern([t == SLIDING for t in config.layer_types])
    if config.attn_softcap:
        writer.add_attn_logit_softcapping(float(config.attn_softcap))
    if config.final_softcap:
        writer.add_final_logit_softcapping(float(config.final_softcap))
    if config.rope_local_theta is not None:
        writer.add_rope_freq_base_swa(float(config.rope_local_theta))
    file_type = getattr(gguf.LlamaFileType, f"MOSTLY_{quant.upper() if mix else qtype.name}",
                        gguf.LlamaFileType.ALL_F32)
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    scaling = config.rope_scaling
    kind = scaling.get("rope_type", scaling.get("type")) if scaling else None
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(scaling["factor"]))  # type: ignore[index]
    elif kind == "llama3":
        writer.add_tensor("rope_freqs.weight", llama3_rope_freq_factors(scaling, head_dim, config.rope_theta))
    elif kind == "longrope":  # as llama.cpp's Phi-3 converter stores it
        writer.add_tensor("rope_factors_long.weight", np.asarray(scaling["long_factor"], dtype=np.float32))
        writer.add_tensor("rope_factors_short.weight", np.asarray(scaling["short_factor"], dtype=np.float32))
        writer.add_rope_scaling_orig_ctx_len(int(scaling["original_max_position_embeddings"]))
        if "attention_factor" in scaling:
            writer.add_rope_scaling_attn_factors(float(scaling["attention_factor"]))
    elif kind is not None:
        raise GGUFError(f"cannot write rope scaling {kind!r} to GGUF")

    extra = dict(tokenizer_metadata or {})
    for key, value in (("bos_token_id", config.bos_token_id), ("padding_token_id", config.pad_token_id),
                       ("eos_token_id", (config.eos_token_ids or [None])[0])):
        if value is not None:
            extra.setdefault(f"tokenizer.ggml.{key}", int(value))
    for key, value in extra.items():
        _add_metadata(writer, key, value)

    for name, tensor in hf_state_dict.items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: llama.cpp reuses token_embd
        gguf_name = hf_to_gguf_name(name, config.family)
        w = tensor.detach().to(torch.float32).cpu().numpy()
        n_heads = _rotary_heads(gguf_name, config)
        if n_heads is not None:
            w = np.ascontiguousarray(permute_for_gguf(w, n_heads))
        w = w + _norm_shift(gguf_name, config)
        wtype = _mixed_type(mix, gguf_name, config.num_layers) if mix else qtype
        if w.ndim >= 2 and w.shape[-1] % gguf.GGML_QUANT_SIZES[wtype][0] and wtype.name in K_FALLBACK:
            wtype = gguf.GGMLQuantizationType[K_FALLBACK[wtype.name]]
        block_size = gguf.GGML_QUANT_SIZES[wtype][0]
        if w.ndim < 2 or wtype == gguf.GGMLQuantizationType.F32 or w.shape[-1] % block_size:
            writer.add_tensor(gguf_name, w)
        elif wtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(gguf_name, w.astype(np.float16))
        else:
            writer.add_tensor(gguf_name, _quantize_blocks(w, wtype), raw_dtype=wtype)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# llama-quantize's mixes: (base type, type of the tensors that get more bits)
MIXES = {"Q4_K_M": ("Q4_K", "Q6_K"), "Q5_K_M": ("Q5_K", "Q6_K")}


def _mixed_type(mix: tuple[str, str], gguf_name: str, n_layers: int) -> gguf.GGMLQuantizationType:
    """A tensor's type in a _K_M mix, by llama.cpp's rule: the output matrix and, in the first and
    last eighth of the layers and every third layer between, attn_v and ffn_down take more bits."""
    base, more = mix
    part = gguf_name.split(".")[-2]
    layer = int(gguf_name.split(".")[1]) if gguf_name.startswith("blk.") else -1
    more_bits = layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2
    if part == "output" or (part in ("attn_v", "ffn_down") and more_bits):
        return gguf.GGMLQuantizationType[more]
    if part == "attn_qkv":  # fused q/k/v (Phi-3) sits between the two
        return gguf.GGMLQuantizationType.Q5_K
    return gguf.GGMLQuantizationType[base]


def _quantize_blocks(w: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """Block bytes [rows, row_bytes]: our native quantizers (fast, K-formats too), else the gguf package."""
    from aigc import kernels

    if qtype.name in kernels.FORMATS and kernels.available():
        packed = kernels.quantize(torch.from_numpy(np.ascontiguousarray(w)), qtype.name)
        return packed.data.view(torch.uint8).numpy().reshape(w.shape[0], -1)
    return gguf.quants.quantize(w, qtype)


def _add_metadata(writer: gguf.GGUFWriter, key: str, value: Any) -> None:
    """Add one key with a GGUF type chosen from the Python value (ids as uint32, like llama.cpp)."""
    if isinstance(value, (list, tuple)):
        if not value:
            return
        sub = {str: VT.STRING, bool: VT.BOOL, int: VT.INT32, float: VT.FLOAT32}.get(type(value[0]))
        if sub is None:
            raise GGUFError(f"cannot store a list of {type(value[0]).__name__} in GGUF metadata ({key!r})")
        writer.add_key_value(key, list(value), VT.ARRAY, sub_type=sub)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int) and 0 <= value < 2**32:
        writer.add_uint32(key, value)
    elif isinstance(value, int):
        writer.add_int64(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    else:
        raise GGUFError(f"cannot store {type(value).__name__} value of {key!r} in GGUF metadata")
