"""The network: one decoder-only transformer for the Llama family (Llama, Qwen2/3, Mistral, Gemma 2/3,
Phi-3) and GPT-2.

Read top to bottom: norms, rotary embeddings, attention, MLP, block, model. The variant is picked by
`ModelConfig` flags, not by subclasses. Parameter names are ours; `hf_checkpoint.py` maps them to and
from Hugging Face names. q/k/v and gate/up are stored fused so each step launches fewer kernels
(small models on CPU are bound by per-op overhead, see PERF-NOTES).

Incremental decoding uses a `KVCache` with one row ("slot") per sequence. Each forward writes the new
keys/values at explicit cache positions, so a batch may hold sequences of different lengths
(left padding for `generate`, unrelated requests for the serving engine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc.models.config import SLIDING, ModelConfig


class RMSNorm(nn.Module):
    """RMSNorm; Gemma's scales by (1 + weight): `offset` 1 (its checkpoints store weight - 1)."""

    def __init__(self, dim: int, eps: float, offset: float = 0.0):
        super().__init__()
        self.eps, self.offset = eps, offset
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight + self.offset if self.offset else self.weight
        if x.dtype == torch.float32:  # one fused kernel: decode steps are bound by per-op overhead
            return F.rms_norm(x, w.shape, w, self.eps)
        # Normalise in fp32 like the reference implementations, then cast back (Gemma casts last).
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:
            return (xf * w.float()).to(x.dtype)
        return w * xf.to(x.dtype)


def make_norm(cfg: ModelConfig, dim: int | None = None) -> nn.Module:
    if cfg.is_gpt2:
        return nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)
    return RMSNorm(dim or cfg.hidden_size, cfg.norm_eps, cfg.norm_offset)


def rope_inv_freq(cfg: ModelConfig, local: bool = False) -> torch.Tensor:
    """Inverse frequencies of the rotary embedding, with linear or llama3 scaling applied.
    local=True: Gemma 3's sliding layers (their own base, no scaling)."""
    d = cfg.head_dim
    theta = cfg.rope_local_theta if local else cfg.rope_theta
    # always on the CPU: under a meta-device build, meta ops would load torch's meta kernels (~70 MB RSS)
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64, device="cpu").float() / d))
    s = None if local else cfg.rope_scaling
    if not s:
        return inv_freq
    kind = s.get("rope_type", s.get("type"))
    if kind == "longrope":  # short-context factors per frequency (see ModelConfig.context_length)
        return inv_freq / torch.tensor(s["short_factor"], dtype=torch.float32, device="cpu")
    factor = float(s["factor"])
    if kind == "linear":
        return inv_freq / factor
    if kind == "llama3":
        low, high = float(s["low_freq_factor"]), float(s["high_freq_factor"])
        old_ctx = float(s["original_max_position_embeddings"])
        low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(medium, smoothed, scaled)
    raise ValueError(f"unsupported rope scaling {kind!r}")


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: [B, T, H, D]; cos/sin: [B, T, 1, D]. Half-split rotation, as in HF Llama.
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


@dataclass
class KVCache:
    """Keys and values per layer, shaped [slots, kv_heads, max_len, head_dim]."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]

    @classmethod
    def allocate(cls, cfg: ModelConfig, slots: int, max_len: int, dtype: torch.dtype,
                 device: torch.device | str = "cpu") -> KVCache:
        shape = (slots, cfg.num_kv_heads, max_len, cfg.head_dim)
        return cls(
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_layers)],
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_layers)],
        )

    @property
    def slots(self) -> int:
        return self.k[0].shape[0]

    @property
    def max_len(self) -> int:
        return self.k[0].shape[2]

    def grown(self, max_len: int) -> KVCache:
        """A copy with room for `max_len` positions per slot (contents kept, new room uninitialised)."""
        def grow(t: torch.Tensor) -> torch.Tensor:
            new = t.new_empty(t.shape[0], t.shape[1], max_len, t.shape[3])
            new[:, :, : t.shape[2]].copy_(t)
            return new

        return KVCache([grow(t) for t in self.k], [grow(t) for t in self.v])

    def copy_slot(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` positions of slot `src` into slot `dst` (for slot compaction/forking)."""
        for kc, vc in zip(self.k, self.v, strict=True):
            kc[dst, :, :length].copy_(kc[src, :, :length])
            vc[dst, :, :length].copy_(vc[src, :, :length])

    def reorder(self, index: torch.Tensor) -> None:
        """Permute rows in place (beam search keeps the surviving beams)."""
        for kc, vc in zip(self.k, self.v, strict=True):
            kc[: len(index)] = kc.index_select(0, index)
            vc[: len(index)] = vc.index_select(0, index)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


@dataclass
class CacheWrite:
    """Where this forward's keys/values go in the cache and which cached keys each query may see.

    `rows` picks consecutive cache slots (views, no copies). `start` (an int) means every row writes
    positions start..start+T-1; otherwise `positions` [B, T] gives per-row positions. `key_mask`
    [B, >=length] marks valid keys (False for padding).
    """

    rows: slice
    length: int  # keys visible after this write: max position + 1
    start: int | None = None
    positions: torch.Tensor | None = None
    key_mask: torch.Tensor | None = None


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.n_head, self.n_kv, self.hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, (self.n_head + 2 * self.n_kv) * self.hd, bias=cfg.qkv_bias)
        self.out = nn.Linear(self.n_head * self.hd, cfg.hidden_size, bias=cfg.out_bias)
        self.use_rope = not cfg.is_gpt2
        self.dropout = cfg.dropout
        self.scale, self.softcap = cfg.query_scale, cfg.attn_softcap
        self.q_norm = make_norm(cfg, self.hd) if cfg.qk_norm else None
        self.k_norm = make_norm(cfg, self.hd) if cfg.qk_norm else None

    def forward(self, x, cos, sin, mask, cache_kv, write: CacheWrite | None) -> torch.Tensor:
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, self.n_head + 2 * self.n_kv, self.hd)
        qk, v = qkv[:, :, : self.n_head + self.n_kv], qkv[:, :, self.n_head + self.n_kv :]
        if self.q_norm is not None:  # per-head norms of q and k, before the rotation
            qk = torch.cat([self.q_norm(qk[:, :, : self.n_head]), self.k_norm(qk[:, :, self.n_head :])], dim=2)
        if self.use_rope:  # rotate queries and keys together: half the kernel launches
            qk = apply_rope(qk, cos, sin)
        q = qk[:, :, : self.n_head].transpose(1, 2)
        k = qk[:, :, self.n_head :].transpose(1, 2)
        v = v.transpose(1, 2)
        if cache_kv is not None:
            kc, vc = cache_kv[0][write.rows], cache_kv[1][write.rows]
            if write.start is not None:
                kc[:, :, write.start : write.start + T] = k
                vc[:, :, write.start : write.start + T] = v
            else:
                b = torch.arange(B, device=x.device)[:, None]
                kc[b, :, write.positions] = k.transpose(1, 2)
                vc[b, :, write.positions] = v.transpose(1, 2)
            k, v = kc[:, :, : write.length], vc[:, :, : write.length]
        causal = mask is None and cache_kv is None and T > 1
        if self.softcap:
            y = _softcapped_attention(q, k, v, mask, causal, self.scale, self.softcap)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
                is_causal=causal, enable_gqa=self.n_kv != self.n_head, scale=self.scale,
            )
        return self.out(y.transpose(1, 2).reshape(B, T, self.n_head * self.hd))


def _softcapped_attention(q, k, v, mask, causal: bool, scale: float | None, cap: float) -> torch.Tensor:
    """Attention with Gemma 2's score capping (cap * tanh(s / cap)), which SDPA cannot do."""
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-1, -2)) * (scale if scale is not None else q.shape[-1] ** -0.5)
    scores = torch.tanh(scores / cap) * cap
    if causal:
        T, L = scores.shape[-2:]
        mask = torch.ones(T, L, dtype=torch.bool, device=q.device).tril(L - T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gpt2 = cfg.is_gpt2
        self.gelu_gate = cfg.hidden_act == "gelu_tanh"
        if self.gpt2:
            self.fc = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=True)
        else:  # gate and up projections fused: [gate; up]
            self.fc = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=cfg.mlp_bias)
        self.proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.mlp_bias or self.gpt2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gpt2:
            return self.proj(F.gelu(self.fc(x), approximate="tanh"))
        gate, up = self.fc(x).chunk(2, dim=-1)
        return self.proj((F.gelu(gate, approximate="tanh") if self.gelu_gate else F.silu(gate)) * up)


class Block(nn.Module):
    """Pre-norm residual block; Gemma's "sandwich" also normalises each sub-layer's output."""

    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.attn_norm = make_norm(cfg)
        self.attn = Attention(cfg, layer)
        self.mlp_norm = make_norm(cfg)
        self.mlp = MLP(cfg)
        self.post_attn_norm = make_norm(cfg) if cfg.sandwich_norm else None
        self.post_mlp_norm = make_norm(cfg) if cfg.sandwich_norm else None
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, mask, cache_kv, write):
        h = self.attn(self.attn_norm(x), cos, sin, mask, cache_kv, write)
        if self.post_attn_norm is not None:
            h = self.post_attn_norm(h)
        x = x + self.drop(h)
        h = self.mlp(self.mlp_norm(x))
        if self.post_mlp_norm is not None:
            h = self.post_mlp_norm(h)
        return x + self.drop(h)


def _embedding(rows: int, dim: int) -> nn.Embedding:
    # A meta-device build (loading a checkpoint) skips the random init: its meta ops would load
    # torch's meta kernels, ~70 MB of resident memory for nothing.
    if torch.empty(0).is_meta:
        return nn.Embedding(rows, dim, _weight=torch.empty(rows, dim))
    return nn.Embedding(rows, dim)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = _embedding(cfg.vocab_size, cfg.hidden_size)
        self.pos_emb = _embedding(cfg.max_position_embeddings, cfg.hidden_size) if cfg.is_gpt2 else None
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.norm = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        if not cfg.is_gpt2:
            self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)
        # Gemma 3's sliding layers rotate with their own frequencies
        self.local_layers = frozenset(
            i for i in range(cfg.num_layers)
            if cfg.rope_local_theta is not None and cfg.layer_types and cfg.layer_types[i] == SLIDING)
        if self.local_layers:
            self.register_buffer("inv_freq_local", rope_inv_freq(cfg, local=True), persistent=False)

    def reset_rope(self) -> None:
        """Recompute the rotary buffers (not in checkpoints; a meta-device build leaves them empty)."""
        if self.config.is_gpt2:
            return
        self.inv_freq.copy_(rope_inv_freq(self.config))
        if self.local_layers:
            self.inv_freq_local.copy_(rope_inv_freq(self.config, local=True))

    # ---- set-up -------------------------------------------------------------------------------

    def init_weights(self, std: float = 0.02) -> None:
        """GPT-2 style init for training from scratch; residual projections scaled by depth."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif "norm" in name:  # a norm starts as the identity (Gemma's weight w scales by 1 + w)
                nn.init.constant_(p, 1.0 - self.config.norm_offset)
            elif name.endswith(("attn.out.weight", "mlp.proj.weight")):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.config.num_layers))
            else:
                nn.init.normal_(p, 0.0, std)

    # The final norm is always a float parameter; the embedding may be a packed table (quantized.py).
    @property
    def device(self) -> torch.device:
        return self.norm.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.norm.weight.dtype

    def new_cache(self, slots: int, max_len: int | None = None) -> KVCache:
        return KVCache.allocate(self.config, slots, max_len or self.config.context_length,
                                self.dtype, self.device)

    # ---- forward ------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        write: CacheWrite | None = None,
        attention_mask: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Logits for `input_ids` [B, T].

        positions: rotary/learned position of each token [B, T] (default 0..T-1, or write.start..).
        cache/write: incremental decoding, see `CacheWrite`.
        attention_mask: [B, T] padding mask (1 = real token) when running without a cache.
        last_only: return logits of the last position only ([B, 1, V]); saves the big vocab matmul.
        """
        h = self.hidden_states(input_ids, positions, cache=cache, write=write, attention_mask=attention_mask)
        if last_only:
            h = h[:, -1:]
        logits = self.lm_head(h)
        cap = self.config.final_softcap
        return torch.tanh(logits / cap) * cap if cap else logits

    def hidden_states(self, input_ids, positions=None, *, cache=None, write=None, attention_mask=None):
        """Final normalised hidden states [B, T, D] (used by the LM head and classification heads)."""
        B, T = input_ids.shape
        dev = input_ids.device
        if positions is None:
            base = write.start if (write is not None and write.start is not None) else 0
            positions = torch.arange(base, base + T, device=dev).expand(B, T)
        x = self.tok_emb(input_ids)
        if self.config.embed_scale:
            x = x * torch.tensor(self.config.embed_scale, dtype=x.dtype)
        rope = {False: (None, None)}
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        else:
            def rotation(inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                freqs = positions[:, :, None].float() * inv_freq[None, None, :]
                emb = torch.cat((freqs, freqs), dim=-1)[:, :, None]  # [B, T, 1, D]
                return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

            rope = {False: rotation(self.inv_freq)}
            if self.local_layers:
                rope[True] = rotation(self.inv_freq_local)
        x = self.drop(x)
        masks: dict[int | None, torch.Tensor | None] = {}  # one per window size
        for i, layer in enumerate(self.layers):
            window = self.config.window(i)
            if window not in masks:
                masks[window] = self._mask(B, T, dev, cache, write, attention_mask, window)
            kv = (cache.k[i], cache.v[i]) if cache is not None else None
            cos, sin = rope[i in self.local_layers]
            x = layer(x, cos, sin, masks[window], kv, write)
        return self.norm(x)

    @staticmethod
    def _mask(B, T, dev, cache, write, attention_mask, window: int | None = None) -> torch.Tensor | None:
        """Boolean mask [B, 1, T, L] (True = may attend), or None when plain causal suffices.
        `window`: a query sees only the `window` latest positions (itself included)."""
        if cache is None:
            if attention_mask is None and window is None:
                return None  # SDPA's is_causal
            q_pos = torch.arange(T, device=dev)
            allowed = (q_pos[None, :] <= q_pos[:, None])[None]
            if window is not None:
                allowed = allowed & (q_pos[None, :] > q_pos[:, None] - window)[None]
            if attention_mask is not None:
                allowed = allowed & attention_mask.bool()[:, None, :]
            # A padded query would see no key at all (NaN softmax); let it see itself.
            allowed = allowed | torch.eye(T, dtype=torch.bool, device=dev)[None]
            return allowed.expand(B, T, T)[:, None]
        if write is None:
            raise ValueError("a cache needs a CacheWrite")
        L = write.length
        if write.start is not None:
            if write.key_mask is None and T == 1 and (window is None or L <= window):
                return None  # one new token sees every cached key
            q_pos = torch.arange(write.start, write.start + T, device=dev)[None, :].expand(B, T)
        else:
            q_pos = write.positions
        k_pos = torch.arange(L, device=dev)
        allowed = k_pos[None, None, :] <= q_pos[:, :, None]  # [B, T, L]
        if window is not None:
            allowed = allowed & (k_pos[None, None, :] > q_pos[:, :, None] - window)
        if write.key_mask is not None:
            allowed = allowed & write.key_mask[:, None, :L].bool()
            allowed |= k_pos[None, None, :] == q_pos[:, :, None]
        return allowed[:, None]
