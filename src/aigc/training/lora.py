"""LoRA on our network, saved and loaded in PEFT's adapter format.

Our attention and MLP use fused projections (q|k|v in `attn.qkv`, gate|up in `mlp.fc`). A `LoRALinear`
wraps such a fused Linear with one shared A [r, in] and one B block per fused part, so LoRA can
target any subset of the Hugging Face modules (q_proj, v_proj, ...). Exporting is exact: PEFT's
per-module adapter for q_proj is (A, B_q), for v_proj (A, B_v), and so on; the shared A is simply
written once per module. The result loads with `peft.PeftModel.from_pretrained(hf_model, dir)`.

Reading an adapter (ours or one trained with PEFT on a transformers model) merges it into the weights:
delta W = scaling * B @ A per HF module, added in HF naming, then converted back to our fused layout.
This is what `aigc merge` and serving "base + adapter" use. Only torch, safetensors and models/ are
imported here (peft itself only to write its config), so a loader may call `merge_peft_adapter`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from aigc.models.adapters import (  # noqa: F401  (re-exported: the reading side lives in models/)
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AdapterError,
    adapter_deltas,
    merge_peft_adapter,
    read_adapter_config,
    read_adapter_tensors,
)
from aigc.models.config import ModelConfig

LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GPT2_TARGETS = ("c_attn", "c_proj", "c_fc")


@dataclass(frozen=True)
class Part:
    hf_suffix: str  # module path inside an HF block, e.g. "self_attn.q_proj"
    rows: int  # output rows of the fused Linear that belong to this module

    @property
    def short(self) -> str:
        return self.hf_suffix.rsplit(".", 1)[-1]


def lora_sites(cfg: ModelConfig) -> dict[str, list[Part]]:
    """Our Linear inside a block -> the HF modules it fuses, in row order."""
    d, f = cfg.hidden_size, cfg.intermediate_size
    if cfg.is_gpt2:
        return {"attn.qkv": [Part("attn.c_attn", 3 * d)], "attn.out": [Part("attn.c_proj", d)],
                "mlp.fc": [Part("mlp.c_fc", f)], "mlp.proj": [Part("mlp.c_proj", d)]}
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    return {
        "attn.qkv": [Part("self_attn.q_proj", q), Part("self_attn.k_proj", kv), Part("self_attn.v_proj", kv)],
        "attn.out": [Part("self_attn.o_proj", d)],
        "mlp.fc": [Part("mlp.gate_proj", f), Part("mlp.up_proj", f)],
        "mlp.proj": [Part("mlp.down_proj", d)],
    }


def hf_block_prefix(cfg: ModelConfig) -> str:
    return "transformer.h." if cfg.is_gpt2 else "model.layers."


def resolve_targets(cfg: ModelConfig, targets: list[str] | str | None) -> list[str]:
    """Validate HF short module names; None or "all-linear" means every projection of a block."""
    known = GPT2_TARGETS if cfg.is_gpt2 else LLAMA_TARGETS
    if targets is None or targets == "all-linear" or targets == ["all-linear"]:
        return list(known)
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    bad = [t for t in targets if t not in known]
    if bad or not targets:
        raise ValueError(f"unknown LoRA target(s) {bad or targets}; choose from {', '.join(known)} or all-linear")
    return list(dict.fromkeys(targets))


class LoRALinear(nn.Module):
    """y = base(x) + scaling * dropout(x) A^T B^T, with B made of one block per fused part.

    Parts that are not targeted contribute zero rows and have no parameters.
    """

    def __init__(self, base: nn.Linear, parts: list[tuple[int, bool]], r: int, alpha: float, dropout: float):
        super().__init__()
        if r <= 0:
            raise ValueError(f"LoRA rank must be positive, got {r}")
        self.base = base
        self.parts = parts
        self.r, self.alpha = r, alpha
        self.scaling = alpha / r
        dev, dtype = base.weight.device, base.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=dev, dtype=dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # PEFT's default init; B starts at zero
        self.lora_B = nn.ParameterList(
            nn.Parameter(torch.zeros(rows, r, device=dev, dtype=dtype)) for rows, on in parts if on)
        self.drop = nn.Dropout(dropout)
        self.disabled = False  # see `adapters_disabled`

    def full_B(self) -> torch.Tensor:
        blocks, trained = [], iter(self.lora_B)
        for rows, on in self.parts:
            blocks.append(next(trained) if on else self.lora_A.new_zeros(rows, self.r))
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks)

    def delta_weight(self) -> torch.Tensor:
        return self.scaling * (self.full_B() @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.disabled:
            return self.base(x)
        return self.base(x) + (self.drop(x) @ self.lora_A.t() @ self.full_B().t()) * self.scaling


def add_lora(model: nn.Module, cfg: ModelConfig, r: int, alpha: float, dropout: float = 0.0,
             targets: list[str] | str | None = None, layers: range | None = None) -> list[str]:
    """Wrap the targeted Linears of `model.layers` (a Transformer, or any module with `.layers`) in place.

    Freezes nothing by itself; call `freeze_for_lora` to leave only LoRA (and heads) trainable.
    Returns the resolved HF target names.
    """
    wanted = set(resolve_targets(cfg, targets))
    sites = lora_sites(cfg)
    for i, block in enumerate(model.layers):
        if layers is not None and i not in layers:
            continue
        for site, parts in sites.items():
            flags = [p.short in wanted for p in parts]
            if not any(flags):
                continue
            owner_name, attr = site.split(".")
            owner = getattr(block, owner_name)
            base = getattr(owner, attr)
            if isinstance(base, LoRALinear):
                raise ValueError("the model already has LoRA layers")
            setattr(owner, attr, LoRALinear(base, [(p.rows, on) for p, on in zip(parts, flags, strict=True)],
                                            r, alpha, dropout))
    return sorted(wanted)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """The model as its base, LoRA off (PEFT's `disable_adapter`): a LoRA run's reference model for
    DPO/KTO without a second copy of the weights."""
    layers = list(lora_layers(model).values())
    for m in layers:
        m.disabled = True
    try:
        yield model
    finally:
        for m in layers:
            m.disabled = False


def freeze_for_lora(model: nn.Module, keep: tuple[str, ...] = ()) -> None:
    """Only LoRA matrices (and parameters whose name starts with one of `keep`) stay trainable."""
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name or name.startswith(keep))


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRALinear into its base Linear (W += scaling * B A) and unwrap it. In place."""
    for name, m in lora_layers(model).items():
        m.base.weight += m.delta_weight().to(m.base.weight.dtype)
        parent_name, attr = name.rsplit(".", 1)
        setattr(model.get_submodule(parent_name), attr, m.base)
    return model


# ---- PEFT format ------------------------------------------------------------------------------

def peft_tensors(model: nn.Module, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """LoRA weights under PEFT's names for the HF model (`base_model.model.<hf module>.lora_A.weight`)."""
    sites = lora_sites(cfg)
    out: dict[str, torch.Tensor] = {}
    pat = re.compile(r"(?:.*\.)?layers\.(\d+)\.(attn\.\w+|mlp\.\w+)$")
    for name, m in lora_layers(model).items():
        match = pat.match(name)
        if match is None:
            raise AdapterError(f"LoRA on an unexpected module {name}")
        i, site = int(match.group(1)), match.group(2)
        trained = iter(m.lora_B)
        for part, (_, on) in zip(sites[site], m.parts, strict=True):
            if not on:
                continue
            key = f"base_model.model.{hf_block_prefix(cfg)}{i}.{part.hf_suffix}"
            out[key + ".lora_A.weight"] = m.lora_A.detach().float().clone()
            out[key + ".lora_B.weight"] = next(trained).detach().float().clone()
    return out


def save_peft_adapter(model: nn.Module, cfg: ModelConfig, out_dir: str | Path, *, base_model: str | None,
                      task_type: str = "CAUSAL_LM", extra_tensors: dict[str, torch.Tensor] | None = None,
                      modules_to_save: list[str] | None = None) -> Path:
    """Write adapter_config.json + adapter_model.safetensors that `peft.PeftModel.from_pretrained` loads.

    `extra_tensors` are fully trained modules (e.g. a classification head) under their HF names
    ("score.weight"); they are stored as PEFT stores `modules_to_save`.
    """
    from peft import LoraConfig  # peft writes its own config so its loader always accepts it

    layers = list(lora_layers(model).values())
    if not layers:
        raise AdapterError("the model has no LoRA layers to save")
    first = layers[0]
    tensors = peft_tensors(model, cfg)
    targets = sorted({k.split(".lora_A.")[0].rsplit(".", 1)[-1] for k in tensors if ".lora_A." in k})
    for name, t in (extra_tensors or {}).items():
        tensors[f"base_model.model.{name}"] = t.detach().float().contiguous().clone()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = LoraConfig(r=first.r, lora_alpha=first.alpha, lora_dropout=first.drop.p, target_modules=targets,
                        bias="none", task_type=task_type, base_model_name_or_path=base_model,
                        fan_in_fan_out=cfg.is_gpt2, modules_to_save=modules_to_save)
    config.save_pretrained(str(out))
    save_file(tensors, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return out


def load_with_adapter(adapter_dir: str | Path, *, base: str | None = None, models_dir: Path | None = None,
                      dtype: str | torch.dtype = "float32"):
    """Base model + merged adapter (see `aigc.models.loader.load_with_adapter`)."""
    from aigc.models.loader import load_with_adapter as load

    return load(adapter_dir, base=base, models_dir=models_dir, dtype=dtype)
