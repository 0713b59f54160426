"""Load a model by name: registry lookup, weights (HF dir or GGUF), tokenizer, dtype."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from aigc import kernels
from aigc.models.adapters import ADAPTER_CONFIG, AdapterError, merge_peft_adapter, read_adapter_config
from aigc.models.config import ModelConfig
from aigc.models.gguf_checkpoint import check_gguf, read_gguf
from aigc.models.hf_checkpoint import load_hf_dir, model_from_hf_state_dict, parse_dtype
from aigc.models.quantized import check_scheme, model_from_packed_state, quantize_model
from aigc.models.registry import resolve_model
from aigc.models.sentence_encoder import is_encoder_dir
from aigc.models.transformer import Transformer
from aigc.tokenizer import Tokenizer


@dataclass
class LoadedModel:
    name: str
    model: Transformer
    tokenizer: Tokenizer
    config: ModelConfig
    path: Path

    @property
    def context_window(self) -> int:
        return self.config.context_length

    @property
    def eos_token_ids(self) -> list[int]:
        ids = set(self.config.eos_token_ids) | set(self.tokenizer.eos_token_ids)
        return sorted(ids)


def load_model(name: str, *, models_dir: Path | None = None, dtype: str | torch.dtype = "float32",
               offline: bool | None = None, quantize: str = "none") -> LoadedModel:
    """Resolve `name` (bundled alias, models_dir entry, local path or hub id) and load it for inference.

    quantize (see `models/quantized.py`): "none" gives float weights in `dtype` (what training and
    conversion need); "auto" keeps a GGUF file's blocks as stored and quantizes an HF checkpoint to
    the machine's default format; a format name (q8_0, q4_k, ...) quantizes to it.

    A PEFT LoRA adapter directory (adapter_config.json, no config.json) loads its base model (named in
    the adapter config) with the adapter merged into the weights: "base + adapter" serving.
    """
    if (Path(name) / ADAPTER_CONFIG).is_file() and not (Path(name) / "config.json").is_file():
        return load_with_adapter(Path(name), models_dir=models_dir, dtype=dtype, offline=offline, quantize=quantize)
    resolved = resolve_model(name, models_dir=models_dir, offline=offline)
    torch_dtype = parse_dtype(dtype)
    scheme = check_scheme(quantize)
    if resolved.kind == "gguf":
        keep_blocks = scheme == "auto" and kernels.available()
        cfg, state_dict, meta = read_gguf(resolved.path, packed=keep_blocks)
        if keep_blocks:
            model = model_from_packed_state(cfg, state_dict, dtype=torch.float32)
        else:
            model = model_from_hf_state_dict(cfg, state_dict, dtype=torch_dtype)
            if scheme != "auto":
                quantize_model(model, scheme)
        tokenizer = Tokenizer.from_gguf(meta)  # parsed metadata: avoids a second slow read
    else:
        model = load_hf_dir(resolved.path, dtype=torch_dtype)
        cfg = model.config
        tokenizer = Tokenizer.from_dir(resolved.path)
        quantize_model(model, scheme)
    model.requires_grad_(False)
    return LoadedModel(resolved.name, model, tokenizer, cfg, resolved.path)


def check_model(name: str, *, models_dir: Path | None = None, offline: bool | None = None) -> None:
    """Fail now, with one line, for a model that cannot load: unknown name, unreadable or truncated
    GGUF, unsupported architecture, no tokenizer (a server checks before it starts, not in the
    background). Reads headers and configs only."""
    if (Path(name) / ADAPTER_CONFIG).is_file() and not (Path(name) / "config.json").is_file():
        return  # its base is resolved when it loads
    resolved = resolve_model(name, models_dir=models_dir, offline=offline)
    if resolved.kind == "gguf":
        check_gguf(resolved.path)
    elif not is_encoder_dir(resolved.path):
        ModelConfig.from_json_file(resolved.path / "config.json")


def load_with_adapter(adapter_dir: str | Path, *, base: str | None = None, models_dir: Path | None = None,
                      dtype: str | torch.dtype = "float32", offline: bool | None = None,
                      quantize: str = "none") -> LoadedModel:
    """The adapter's base model (or `base`) with the adapter merged in: ready to serve or generate.
    The tokenizer saved next to the adapter is used when there is one (it is the base's tokenizer)."""
    adapter_dir = Path(adapter_dir)
    base = base or read_adapter_config(adapter_dir).get("base_model_name_or_path")
    if not base:
        raise AdapterError(f"{adapter_dir}: adapter_config.json names no base model; pass --base")
    loaded = load_model(base, models_dir=models_dir, dtype="float32", offline=offline)
    merge_peft_adapter(loaded.model, adapter_dir)  # merge in fp32, then cast
    loaded.model.to(parse_dtype(dtype))
    # merged weights are floats: "auto" quantizes them as it would an HF checkpoint
    quantize_model(loaded.model, quantize)
    if (adapter_dir / "tokenizer.json").is_file():
        loaded.tokenizer = Tokenizer.from_dir(adapter_dir)
    loaded.name = f"{loaded.name}+{adapter_dir.name}"
    loaded.path = adapter_dir
    return loaded
