"""Hugging Face checkpoint I/O: map HF parameter names to ours and back, load and save directories.

A saved directory (config.json + model.safetensors + tokenizer files) opens in
`transformers.AutoModelForCausalLM.from_pretrained`, PEFT and vLLM.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from aigc.models.config import ModelConfig
from aigc.models.transformer import Transformer


class CheckpointError(ValueError):
    """A checkpoint directory that is missing files or holds unexpected tensors."""


DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise CheckpointError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}") from None


# ---- name mapping -----------------------------------------------------------------------------

def hf_to_native(cfg: ModelConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF-named tensors -> our names (fusing q/k/v and gate/up, transposing GPT-2's Conv1D)."""
    return _gpt2_to_native(cfg, sd) if cfg.is_gpt2 else _llama_to_native(cfg, sd)


# Our block's norms -> HF names. Gemma's post_attention_layernorm follows attention (a "sandwich"),
# where Llama's is the norm before the MLP.
_LLAMA_NORMS = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"}
_GEMMA_NORMS = {"attn_norm": "input_layernorm", "post_attn_norm": "post_attention_layernorm",
                "mlp_norm": "pre_feedforward_layernorm", "post_mlp_norm": "post_feedforward_layernorm"}


def layer_norm_names(cfg: ModelConfig) -> dict[str, str]:
    """Our per-layer norm names -> HF's (q/k norms included)."""
    names = dict(_GEMMA_NORMS if cfg.sandwich_norm else _LLAMA_NORMS)
    if cfg.qk_norm:
        names.update({"attn.q_norm": "self_attn.q_norm", "attn.k_norm": "self_attn.k_norm"})
    return names


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Rows of `parts` stacked. Placeholders (meta tensors, for weights a packed GGUF read keeps in
    blocks) get a new placeholder: a meta-device op would load torch's meta kernels, ~70 MB of RSS."""
    if parts[0].is_meta:
        return torch.empty(sum(p.shape[0] for p in parts), *parts[0].shape[1:], device="meta")
    return torch.cat(parts)


# A multimodal checkpoint's text model (gemma-3-4b-it and larger): its prefixes, old and new; the
# vision tower and projector are not ours to run and are left out.
_TEXT_PREFIXES = ("language_model.model.", "model.language_model.")
_VISION_PREFIXES = ("vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector.")


def _text_model_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not any(k.startswith(_TEXT_PREFIXES) for k in sd):
        return sd
    out = {}
    for k, v in sd.items():
        if k.startswith(_VISION_PREFIXES):
            continue
        for prefix in _TEXT_PREFIXES:
            k = "model." + k.removeprefix(prefix) if k.startswith(prefix) else k
        out[k.removeprefix("language_model.")] = v  # language_model.lm_head -> lm_head
    return out


def _llama_to_native(cfg: ModelConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = _text_model_names(sd)
    sd = {k.removeprefix("model.") if k.startswith("model.") else k: v for k, v in sd.items()}
    out = {"tok_emb.weight": sd.pop("embed_tokens.weight"), "norm.weight": sd.pop("norm.weight")}
    if "lm_head.weight" in sd:
        head = sd.pop("lm_head.weight")
        if not cfg.tie_word_embeddings:
            out["lm_head.weight"] = head
    fused = cfg.family == "phi3"  # Phi-3 stores q/k/v and gate/up fused, in our order
    for i in range(cfg.num_layers):
        p = f"layers.{i}."
        a = p + "self_attn."
        for ours, hf in layer_norm_names(cfg).items():
            out[p + ours + ".weight"] = sd.pop(p + hf + ".weight")
        if fused:
            out[p + "attn.qkv.weight"] = sd.pop(a + "qkv_proj.weight")
        else:
            out[p + "attn.qkv.weight"] = _cat([sd.pop(a + f"{n}_proj.weight") for n in "qkv"])
        if cfg.qkv_bias:
            out[p + "attn.qkv.bias"] = torch.cat([sd.pop(a + f"{n}_proj.bias") for n in "qkv"])
        out[p + "attn.out.weight"] = sd.pop(a + "o_proj.weight")
        if cfg.out_bias:
            out[p + "attn.out.bias"] = sd.pop(a + "o_proj.bias")
        m = p + "mlp."
        if fused:
            out[p + "mlp.fc.weight"] = sd.pop(m + "gate_up_proj.weight")
        else:
            out[p + "mlp.fc.weight"] = _cat([sd.pop(m + "gate_proj.weight"), sd.pop(m + "up_proj.weight")])
        out[p + "mlp.proj.weight"] = sd.pop(m + "down_proj.weight")
        if cfg.mlp_bias:
            out[p + "mlp.fc.bias"] = torch.cat([sd.pop(m + "gate_proj.bias"), sd.pop(m + "up_proj.bias")])
            out[p + "mlp.proj.bias"] = sd.pop(m + "down_proj.bias")
    leftover = [k for k in sd if not k.endswith("rotary_emb.inv_freq")]
    if leftover:
        raise CheckpointError(f"unexpected tensors in checkpoint: {', '.join(sorted(leftover)[:5])}")
    return out


def _gpt2_to_native(cfg: ModelConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    out = {"tok_emb.weight": sd.pop("wte.weight"), "pos_emb.weight": sd.pop("wpe.weight"),
           "norm.weight": sd.pop("ln_f.weight"), "norm.bias": sd.pop("ln_f.bias")}
    sd.pop("lm_head.weight", None)  # always tied to wte
    for i in range(cfg.num_layers):
        h, p = f"h.{i}.", f"layers.{i}."
        for hf, ours in (("ln_1", "attn_norm"), ("ln_2", "mlp_norm")):
            out[p + ours + ".weight"] = sd.pop(h + hf + ".weight")
            out[p + ours + ".bias"] = sd.pop(h + hf + ".bias")
        # Conv1D stores weights as [in, out]; nn.Linear wants [out, in].
        for hf, ours in (("attn.c_attn", "attn.qkv"), ("attn.c_proj", "attn.out"),
                         ("mlp.c_fc", "mlp.fc"), ("mlp.c_proj", "mlp.proj")):
            out[p + ours + ".weight"] = sd.pop(h + hf + ".weight").t().contiguous()
            out[p + ours + ".bias"] = sd.pop(h + hf + ".bias")
        sd.pop(h + "attn.bias", None)  # old checkpoints store the causal mask as a buffer
        sd.pop(h + "attn.masked_bias", None)
    if sd:
        raise CheckpointError(f"unexpected tensors in checkpoint: {', '.join(sorted(sd)[:5])}")
    return out


def native_to_hf(cfg: ModelConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names -> HF names (inverse of `hf_to_native`)."""
    out: dict[str, torch.Tensor] = {}
    F, hd = cfg.intermediate_size, cfg.head_dim
    if cfg.is_gpt2:
        out["transformer.wte.weight"] = sd["tok_emb.weight"]
        out["transformer.wpe.weight"] = sd["pos_emb.weight"]
        out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = sd["norm.weight"], sd["norm.bias"]
        for i in range(cfg.num_layers):
            h, p = f"transformer.h.{i}.", f"layers.{i}."
            for hf, ours in (("ln_1", "attn_norm"), ("ln_2", "mlp_norm")):
                out[h + hf + ".weight"], out[h + hf + ".bias"] = sd[p + ours + ".weight"], sd[p + ours + ".bias"]
            for hf, ours in (("attn.c_attn", "attn.qkv"), ("attn.c_proj", "attn.out"),
                             ("mlp.c_fc", "mlp.fc"), ("mlp.c_proj", "mlp.proj")):
                out[h + hf + ".weight"] = sd[p + ours + ".weight"].t().contiguous()
                out[h + hf + ".bias"] = sd[p + ours + ".bias"]
        return out
    out["model.embed_tokens.weight"] = sd["tok_emb.weight"]
    out["model.norm.weight"] = sd["norm.weight"]
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    sizes = [cfg.num_heads * hd, cfg.num_kv_heads * hd, cfg.num_kv_heads * hd]
    fused = cfg.family == "phi3"
    for i in range(cfg.num_layers):
        p, m = f"layers.{i}.", f"model.layers.{i}."
        for ours, hf in layer_norm_names(cfg).items():
            out[m + hf + ".weight"] = sd[p + ours + ".weight"]
        if fused:
            out[m + "self_attn.qkv_proj.weight"] = sd[p + "attn.qkv.weight"]
            out[m + "mlp.gate_up_proj.weight"] = sd[p + "mlp.fc.weight"]
        else:
            for n, t in zip("qkv", sd[p + "attn.qkv.weight"].split(sizes), strict=True):
                out[m + f"self_attn.{n}_proj.weight"] = t.contiguous()
        if cfg.qkv_bias:
            for n, t in zip("qkv", sd[p + "attn.qkv.bias"].split(sizes), strict=True):
                out[m + f"self_attn.{n}_proj.bias"] = t.contiguous()
        out[m + "self_attn.o_proj.weight"] = sd[p + "attn.out.weight"]
        if cfg.out_bias:
            out[m + "self_attn.o_proj.bias"] = sd[p + "attn.out.bias"]
        if not fused:
            gate, up = sd[p + "mlp.fc.weight"].split([F, F])
            out[m + "mlp.gate_proj.weight"], out[m + "mlp.up_proj.weight"] = gate.contiguous(), up.contiguous()
        out[m + "mlp.down_proj.weight"] = sd[p + "mlp.proj.weight"]
        if cfg.mlp_bias:
            gb, ub = sd[p + "mlp.fc.bias"].split([F, F])
            out[m + "mlp.gate_proj.bias"], out[m + "mlp.up_proj.bias"] = gb.contiguous(), ub.contiguous()
            out[m + "mlp.down_proj.bias"] = sd[p + "mlp.proj.bias"]
    return out


# ---- building and loading ---------------------------------------------------------------------

def model_from_hf_state_dict(cfg: ModelConfig, hf_sd: dict[str, torch.Tensor],
                             dtype: torch.dtype | None = None) -> Transformer:
    """Build our network from HF-named tensors (used by the HF-dir and GGUF loaders)."""
    native = hf_to_native(cfg, dict(hf_sd))
    with torch.device("meta"):
        model = Transformer(cfg)
    model = model.to_empty(device="cpu")
    model.reset_rope()  # buffers are not in the checkpoint; meta init left them empty
    missing, unexpected = model.load_state_dict(native, strict=False, assign=True)
    missing = [k for k in missing if not (cfg.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint does not match config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.tok_emb.weight
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def read_hf_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of an HF directory: model.safetensors, or shards listed in the index."""
    single = path / "model.safetensors"
    index = path / "model.safetensors.index.json"
    if single.exists():
        return load_file(single)
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        sd: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            if not (path / shard).exists():
                raise CheckpointError(f"{path}: shard {shard} listed in the index is missing")
            sd.update(load_file(path / shard))
        return sd
    shards = sorted(p for p in path.glob("*.safetensors") if re.match(r".*-\d+-of-\d+\.safetensors", p.name))
    if shards:
        sd = {}
        for s in shards:
            sd.update(load_file(s))
        return sd
    if (path / "pytorch_model.bin").exists():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise CheckpointError(f"{path}: no model.safetensors (or sharded safetensors) found")


def load_hf_dir(path: str | Path, dtype: torch.dtype | None = None) -> Transformer:
    path = Path(path)
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path}: no config.json; is this a Hugging Face model directory?")
    cfg = ModelConfig.from_json_file(path / "config.json")
    return model_from_hf_state_dict(cfg, read_hf_state_dict(path), dtype=dtype)


def save_hf_dir(model: Transformer, path: str | Path, tokenizer=None, dtype: torch.dtype | None = None) -> None:
    """Write config.json + model.safetensors (+ tokenizer files when a tokenizer is given)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    hf = native_to_hf(cfg, sd)
    if dtype is not None:
        hf = {k: v.to(dtype) for k, v in hf.items()}
    out_dtype = next(iter(hf.values())).dtype
    hf = {k: v.contiguous().clone() for k, v in hf.items()}  # safetensors refuses shared storage
    save_cfg = cfg.replace(torch_dtype=str(out_dtype).replace("torch.", ""))
    # Write to a temp name first so an interrupted save never looks like a finished checkpoint.
    tmp = path / "model.safetensors.tmp"
    save_file(hf, tmp, metadata={"format": "pt"})
    tmp.replace(path / "model.safetensors")
    save_cfg.save(path / "config.json")
    gen = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id}
    if cfg.pad_token_id is not None:
        gen["pad_token_id"] = cfg.pad_token_id
    (path / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
