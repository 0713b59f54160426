"""Weights kept in kernel formats (GGUF blocks or quantized on load) inside the torch network.

`QuantizedLinear` and `QuantizedEmbedding` stand in for `nn.Linear` / `nn.Embedding` where a weight
is stored as `kernels.PackedWeight` parts (q/k/v or gate/up stay separate parts when a GGUF file
stores them in different formats). On the CPU they call the native kernels; on another device they
dequantize once and use torch. The network file stays the same: these modules slot into it.

Quantization schemes (`--quantize`): none, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k,
q6_k and auto. A K-format needs rows that are multiples of 256 columns; others fall back the way
llama.cpp's quantizer does (q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0), and rows no format fits stay
as they are. `auto` picks per machine: q8_0 wherever the native kernels run (it streams at the
memory bandwidth and keeps quality), none elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aigc import kernels
from aigc.kernels import PackedWeight, weight_format
from aigc.kernels.formats import K_FALLBACK

SCHEMES = ("none", "auto", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k")
class QuantizationError(ValueError):
    """An unknown scheme, or a weight that cannot be stored in the asked format."""


class QuantizedLinear(nn.Module):
    """y = x @ cat(parts).T + bias, with the parts in kernel formats."""

    def __init__(self, parts: list[PackedWeight], bias: torch.Tensor | None = None):
        super().__init__()
        if not parts or len({p.cols for p in parts}) != 1:
            raise QuantizationError("a quantized linear needs parts with one column count")
        self.parts = parts
        self.in_features = parts[0].cols
        self.out_features = sum(p.rows for p in parts)
        self.bias = nn.Parameter(bias.float(), requires_grad=False) if bias is not None else None
        self._dense: torch.Tensor | None = None  # dequantized copy for non-CPU devices

    @property
    def formats(self) -> list[str]:
        return [p.format.name for p in self.parts]

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def dequantized_weight(self) -> torch.Tensor:
        return torch.cat([kernels.dequantize(p) for p in self.parts])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            if self._dense is None or self._dense.device != x.device:
                self._dense = self.dequantized_weight().to(device=x.device, dtype=x.dtype)
            return F.linear(x, self._dense, None if self.bias is None else self.bias.to(x.dtype))
        shape = x.shape
        y = kernels.matmul(self.parts, x.reshape(-1, shape[-1]).float(), self.bias)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, formats={'+'.join(self.formats)}"


class QuantizedEmbedding(nn.Module):
    """Rows of a packed [vocab, dim] table, dequantized on lookup (one row per token)."""

    def __init__(self, table: PackedWeight):
        super().__init__()
        self.table = table
        self.num_embeddings, self.embedding_dim = table.rows, table.cols
        self._row_bytes = table.format.row_bytes(table.cols)

    @property
    def nbytes(self) -> int:
        return self.table.nbytes

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1).cpu()
        raw = self.table.data.view(torch.uint8).view(self.table.rows, self._row_bytes)[flat].contiguous()
        rows = kernels.dequantize(PackedWeight(raw.view(-1), self.table.format, len(flat), self.table.cols))
        return rows.reshape(*ids.shape, self.embedding_dim).to(ids.device)


def check_scheme(scheme: str | None) -> str:
    """The scheme, lower-cased ("none" for None); an unknown one is an error."""
    name = (scheme or "none").lower()
    if name not in SCHEMES:
        raise QuantizationError(f"unknown quantization {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return name


def resolve_scheme(scheme: str) -> str:
    """The scheme a float checkpoint gets: "auto" becomes this machine's default."""
    scheme = check_scheme(scheme)
    if scheme == "auto":
        return "q8_0" if kernels.available() else "none"
    return scheme


def format_for(scheme: str, cols: int) -> str | None:
    """The ggml format a [*, cols] weight gets under `scheme` (None: keep it as it is)."""
    fmt = scheme.upper()
    if fmt in K_FALLBACK and cols % weight_format(fmt).block_size:
        fmt = K_FALLBACK[fmt]
    return fmt if cols % weight_format(fmt).block_size == 0 else None


def pack(weight: torch.Tensor, scheme: str) -> PackedWeight | None:
    fmt = format_for(scheme, weight.shape[1])
    return None if fmt is None else kernels.quantize(weight, fmt)


def quantize_model(model: nn.Module, scheme: str) -> nn.Module:
    """Replace the model's linear layers (and a tied embedding/LM head) by packed ones, in place.

    The embedding stays in float unless it is tied to the LM head (then both share one packed table,
    as llama.cpp stores them). Returns the model."""
    scheme = resolve_scheme(scheme)
    if scheme == "none":
        return model
    if not kernels.available():
        raise QuantizationError("quantized weights need the native kernels, which are not available here")
    tied = getattr(model, "lm_head", None) is not None and model.lm_head.weight is model.tok_emb.weight
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and not (tied and child is model.lm_head):
                packed = pack(child.weight.detach(), scheme)
                if packed is not None:
                    bias = child.bias.detach() if child.bias is not None else None
                    setattr(parent, name, QuantizedLinear([packed], bias))
    if tied:
        table = pack(model.tok_emb.weight.detach(), scheme)
        if table is not None:
            model.tok_emb = QuantizedEmbedding(table)
            model.lm_head = QuantizedLinear([table])
    return model


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every weight as stored (packed parts once each, float parameters and buffers)."""
    seen: set[int] = set()
    total = 0
    for m in model.modules():
        packs = m.parts if isinstance(m, QuantizedLinear) else [m.table] if isinstance(m, QuantizedEmbedding) else []
        for p in packs:
            if id(p) not in seen:
                seen.add(id(p))
                total += p.nbytes
    for p in {id(t): t for t in model.parameters()}.values():
        total += p.numel() * p.element_size()
    return total


def model_from_packed_state(cfg, hf_state: dict, dtype: torch.dtype | None = None) -> nn.Module:
    """Our network from an HF-named state whose weights may be `PackedWeight`s (a packed GGUF read).

    The float tensors load as usual; every linear with a packed part becomes a `QuantizedLinear`
    over its parts as stored (q/k/v and gate/up are not fused into one block array: they may be in
    different formats), a packed embedding a `QuantizedEmbedding` (shared with a tied LM head)."""
    from aigc.models.hf_checkpoint import model_from_hf_state_dict

    packs = {k: v for k, v in hf_state.items() if isinstance(v, PackedWeight)}
    floats = {k: (torch.empty(v.rows, v.cols, device="meta") if k in packs else v) for k, v in hf_state.items()}
    model = model_from_hf_state_dict(cfg, floats, dtype=dtype)

    def as_pack(name: str) -> PackedWeight:
        t = hf_state[name]
        return t if isinstance(t, PackedWeight) else PackedWeight(t.float().contiguous(), "F32", *t.shape)

    def linear(names: list[str], bias: torch.Tensor | None) -> nn.Module | None:
        if not any(n in packs for n in names):
            return None
        return QuantizedLinear([as_pack(n) for n in names], None if bias is None else bias.detach().float())

    fused = cfg.family == "phi3"  # one stored tensor for q/k/v and one for gate/up
    for i, block in enumerate(model.layers):
        p = f"model.layers.{i}."
        a, m = p + "self_attn.", p + "mlp."
        swaps = {
            (block.attn, "qkv"): [a + "qkv_proj.weight"] if fused else [a + f"{n}_proj.weight" for n in "qkv"],
            (block.attn, "out"): [a + "o_proj.weight"],
            (block.mlp, "fc"): [m + "gate_up_proj.weight"] if fused else [m + "gate_proj.weight", m + "up_proj.weight"],
            (block.mlp, "proj"): [m + "down_proj.weight"],
        }
        for (parent, attr), names in swaps.items():
            new = linear(names, getattr(parent, attr).bias)
            if new is not None:
                setattr(parent, attr, new)
    if "model.embed_tokens.weight" in packs:
        model.tok_emb = QuantizedEmbedding(packs["model.embed_tokens.weight"])
        if cfg.tie_word_embeddings:
            model.lm_head = QuantizedLinear([packs["model.embed_tokens.weight"]])
    if "lm_head.weight" in packs:
        model.lm_head = QuantizedLinear([packs["lm_head.weight"]])
    return model.eval()
