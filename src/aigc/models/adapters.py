"""Reading PEFT LoRA adapters and merging them into our network's weights.

delta W = scaling * B @ A per Hugging Face module, added in HF naming, then converted back to our
fused layout. Used by the loader (serving "base + adapter"), `aigc merge` and LoRA training
(`aigc.training.lora` writes adapters; reading them is a model-loading concern, so it lives here).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from aigc.models.hf_checkpoint import hf_to_native, native_to_hf
from aigc.models.transformer import Transformer

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class AdapterError(ValueError):
    """An adapter directory we cannot read, or one that does not fit the base model."""


def read_adapter_config(adapter_dir: str | Path) -> dict:
    path = Path(adapter_dir)
    cfg_file = path / ADAPTER_CONFIG
    if not cfg_file.is_file():
        raise AdapterError(f"{path}: no {ADAPTER_CONFIG}; is this a PEFT adapter directory?")
    try:
        conf = json.loads(cfg_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AdapterError(f"{cfg_file}: invalid JSON ({e})") from e
    if conf.get("peft_type") != "LORA":
        raise AdapterError(f"{path}: only LoRA adapters are supported, got peft_type {conf.get('peft_type')!r}")
    for key in ("use_dora", "lora_bias"):
        if conf.get(key):
            raise AdapterError(f"{path}: {key}=true adapters are not supported")
    return conf


def read_adapter_tensors(adapter_dir: str | Path) -> dict[str, torch.Tensor]:
    path = Path(adapter_dir)
    if (path / ADAPTER_WEIGHTS).is_file():
        return load_file(str(path / ADAPTER_WEIGHTS))
    if (path / "adapter_model.bin").is_file():
        return torch.load(path / "adapter_model.bin", map_location="cpu", weights_only=True)
    raise AdapterError(f"{path}: no {ADAPTER_WEIGHTS}")


def _scaling(conf: dict, module: str) -> float:
    """alpha / r (or alpha / sqrt(r) with rsLoRA), honouring per-module rank/alpha patterns."""
    r, alpha = conf["r"], conf["lora_alpha"]
    for pattern, value in (conf.get("rank_pattern") or {}).items():
        if re.search(rf"(^|\.){pattern}$", module):
            r = value
    for pattern, value in (conf.get("alpha_pattern") or {}).items():
        if re.search(rf"(^|\.){pattern}$", module):
            alpha = value
    return alpha / math.sqrt(r) if conf.get("use_rslora") else alpha / r


def adapter_deltas(adapter_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(delta per HF weight name, fully replaced tensors such as a head) from a PEFT LoRA adapter."""
    conf = read_adapter_config(adapter_dir)
    tensors = {k.removeprefix("base_model.model."): v for k, v in read_adapter_tensors(adapter_dir).items()}
    deltas: dict[str, torch.Tensor] = {}
    replaced: dict[str, torch.Tensor] = {}
    for key, a in tensors.items():
        if ".lora_embedding_" in key or ".lora_magnitude" in key:
            raise AdapterError(f"{adapter_dir}: {key}: only LoRA on Linear layers is supported")
        if ".lora_B." in key:
            continue
        if ".lora_A." not in key:
            replaced[key.replace(".modules_to_save.default.", ".")] = a
            continue
        module = key.split(".lora_A.")[0]
        b = tensors.get(key.replace(".lora_A.", ".lora_B."))
        if b is None:
            raise AdapterError(f"{adapter_dir}: {key} has no matching lora_B")
        delta = _scaling(conf, module) * (b.float() @ a.float())
        deltas[module + ".weight"] = delta.t() if conf.get("fan_in_fan_out") else delta
    if not deltas:
        raise AdapterError(f"{adapter_dir}: the adapter holds no LoRA weights")
    return deltas, replaced


@torch.no_grad()
def merge_peft_adapter(model: Transformer, adapter_dir: str | Path) -> Transformer:
    """Add a PEFT LoRA adapter's deltas to `model`'s weights in place (returns the model)."""
    cfg = model.config
    deltas, replaced = adapter_deltas(adapter_dir)
    sd = {k: v for k, v in model.state_dict().items()}
    hf = {k: v.clone() for k, v in native_to_hf(cfg, sd).items()}
    for name, delta in deltas.items():
        if name not in hf:
            raise AdapterError(f"{adapter_dir}: the adapter changes {name}, which the base model does not have")
        if hf[name].shape != delta.shape:
            raise AdapterError(f"{adapter_dir}: {name} has shape {tuple(hf[name].shape)} in the model but "
                               f"{tuple(delta.shape)} in the adapter: wrong base model?")
        hf[name] = (hf[name].float() + delta).to(hf[name].dtype)
    for name, t in replaced.items():
        if name in hf:
            hf[name] = t.to(hf[name].dtype)
    native = hf_to_native(cfg, hf)
    model.load_state_dict(native, strict=False)
    return model
