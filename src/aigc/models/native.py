"""NativeModel: the whole forward of a Llama-family model in native code (one C call per step).

A decode step of a small model in eager torch is hundreds of ops at microseconds each (see
PERF-NOTES); here one `aigc_forward` call runs every layer: RMSNorm, the q/k/v product, rotary
embeddings, the KV-cache write, attention, the output product and residual, the SwiGLU MLP, and the
LM head for the tokens that need logits. Weights are read where they are: packed GGUF blocks
(`QuantizedLinear`) or the float tensors of `nn.Linear` (F32/F16/BF16), never copied.

A call takes any mix of sequences: token t sits at position pos[t] of KV slot slot[t] and attends to
that slot's positions 0..pos[t]. So decode tokens of every running request and a chunk of a prompt
go through one forward, and the weights are read once per step for all of them.

The KV cache is a `KVCache` in float16 (float32 on request) that grows with the positions used.
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn

from aigc import kernels
from aigc.kernels import CLayer, CModel, CWeight, PackedWeight
from aigc.models.quantized import QuantizedEmbedding, QuantizedLinear
from aigc.models.transformer import KVCache, Transformer

_FLOAT_FORMATS = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def native_unsupported_reason(model: Transformer) -> str | None:
    """Why `model` cannot run natively (None: it can)."""
    cfg = model.config
    if cfg.is_gpt2:
        return "GPT-2 models run on the torch path"
    if model.device.type != "cpu":
        return "the model is not on the CPU"
    if cfg.head_dim % 2:
        return "odd head size"
    if not kernels.available():
        return "the native kernels are not available"
    return None


def _packs(module: nn.Module) -> list[PackedWeight]:
    if isinstance(module, QuantizedLinear):
        return module.parts
    w = module.weight.detach()
    if w.dtype not in _FLOAT_FORMATS:
        raise ValueError(f"no kernel format for {w.dtype}")
    return [PackedWeight(w.contiguous(), _FLOAT_FORMATS[w.dtype], *w.shape)]


class NativeModel:
    """Runs `model`'s forward natively over `cache` (which the caller may grow; call `bind_cache`)."""

    def __init__(self, model: Transformer, cache: KVCache):
        reason = native_unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"cannot run natively: {reason}")
        self.model, cfg = model, model.config
        self.config = cfg
        self._keep: list = []  # every tensor the C struct points into

        def f32(t: torch.Tensor | None, offset: float = 0.0) -> int | None:
            if t is None:
                return None
            t = t.detach().float().contiguous() + offset
            self._keep.append(t)
            return t.data_ptr()

        def norm(module: nn.Module | None) -> int | None:  # Gemma's (1 + w) folded into a copy
            return None if module is None else f32(module.weight, cfg.norm_offset)

        def cw(p: PackedWeight) -> CWeight:
            self._keep.append(p)
            return p.c_struct()

        layers = (CLayer * cfg.num_layers)()
        for i, block in enumerate(model.layers):
            L = layers[i]
            qkv, gu = _packs(block.attn.qkv), _packs(block.mlp.fc)
            if len(qkv) > 3 or len(gu) > 2:
                raise ValueError("unexpected weight layout")
            for j, p in enumerate(qkv):
                L.qkv[j] = cw(p)
            L.n_qkv = len(qkv)
            for j, p in enumerate(gu):
                L.gate_up[j] = cw(p)
            L.n_gate_up = len(gu)
            L.o, L.down = cw(_packs(block.attn.out)[0]), cw(_packs(block.mlp.proj)[0])
            L.qkv_bias, L.o_bias = f32(block.attn.qkv.bias), f32(block.attn.out.bias)
            L.gate_up_bias, L.down_bias = f32(block.mlp.fc.bias), f32(block.mlp.proj.bias)
            L.attn_norm, L.mlp_norm = norm(block.attn_norm), norm(block.mlp_norm)
            L.q_norm, L.k_norm = norm(block.attn.q_norm), norm(block.attn.k_norm)
            L.post_attn_norm, L.post_mlp_norm = norm(block.post_attn_norm), norm(block.post_mlp_norm)
            L.window = cfg.window(i) or 0
            L.local_rope = int(i in model.local_layers)
        self._layers = layers
        m = CModel()
        m.n_layers, m.hidden, m.n_heads = cfg.num_layers, cfg.hidden_size, cfg.num_heads
        m.n_kv, m.head_dim, m.inter, m.vocab = cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size, cfg.vocab_size
        m.eps = cfg.norm_eps
        m.inv_freq = f32(model.inv_freq)
        m.inv_freq_local = f32(model.inv_freq_local) if model.local_layers else None
        m.embed_scale = cfg.embed_scale or 0.0
        m.attn_scale = cfg.query_scale or 0.0
        m.attn_softcap, m.final_softcap = cfg.attn_softcap or 0.0, cfg.final_softcap or 0.0
        m.act = int(cfg.hidden_act == "gelu_tanh")
        emb = model.tok_emb
        m.embed = cw(emb.table if isinstance(emb, QuantizedEmbedding) else _packs(emb)[0])
        m.lm_head = cw(_packs(model.lm_head)[0])
        m.final_norm = norm(model.norm)
        m.layers = ctypes.cast(layers, ctypes.POINTER(CLayer))
        self._model = m
        self._lib = kernels.load()
        self.bind_cache(cache)

    def bind_cache(self, cache: KVCache) -> None:
        """Point the native model at `cache` (after it was created or grown)."""
        k0 = cache.k[0]
        if k0.dtype not in (torch.float16, torch.float32) or not k0.is_contiguous():
            raise ValueError("the native forward needs a contiguous float16/float32 KV cache")
        self.cache = cache
        m = self._model
        m.kv_f16 = int(k0.dtype == torch.float16)
        slots, kv, cap, hd = k0.shape
        m.kv_slot_stride, m.kv_head_stride, m.kv_capacity = kv * cap * hd, cap * hd, cap
        for i in range(self.config.num_layers):
            self._layers[i].k_cache = cache.k[i].data_ptr()
            self._layers[i].v_cache = cache.v[i].data_ptr()

    def forward(self, ids: list[int], positions: list[int], slots: list[int], out_rows: list[int],
                hidden: bool = False, n_decode: int = 0) -> torch.Tensor:
        """Logits [len(out_rows), vocab] (or final hidden states) of the tokens at `out_rows`.
        The first `n_decode` tokens are decode tokens: their results do not depend on what else is in
        the forward (the kernels compute them row by row), so a stream's output does not change with
        load; the rest (a prefill chunk) may take the faster many-row kernels."""
        n = len(ids)
        i32 = ctypes.c_int32 * n
        out_idx = (ctypes.c_int32 * max(1, len(out_rows)))(*out_rows)
        width = self.config.hidden_size if hidden else self.config.vocab_size
        out = torch.empty(len(out_rows), width, dtype=torch.float32)
        rc = self._lib.aigc_forward(
            ctypes.byref(self._model), n, n_decode, i32(*ids), i32(*positions), i32(*slots), len(out_rows), out_idx,
            None if hidden else out.data_ptr(), out.data_ptr() if hidden else None)
        if rc == -4:
            raise ValueError("a token id or position is outside the vocabulary or the KV cache")
        if rc != 0:
            raise RuntimeError(f"native forward failed (code {rc})")
        return out


def new_native_cache(model: Transformer, slots: int, capacity: int, dtype: torch.dtype = torch.float16) -> KVCache:
    return KVCache.allocate(model.config, slots, capacity, dtype)
