"""Load a model by name: registry lookup, weights (HF dir or GGUF), tokenizer, dtype."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from aigc.models.config import ModelConfig
from aigc.models.gguf_checkpoint import read_gguf
from aigc.models.hf_checkpoint import load_hf_dir, model_from_hf_state_dict, parse_dtype
from aigc.models.registry import resolve_model
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
        return self.config.max_position_embeddings

    @property
    def eos_token_ids(self) -> list[int]:
        ids = set(self.config.eos_token_ids) | set(self.tokenizer.eos_token_ids)
        return sorted(ids)


def load_model(name: str, *, models_dir: Path | None = None, dtype: str | torch.dtype = "float32",
               offline: bool | None = None) -> LoadedModel:
    """Resolve `name` (bundled alias, models_dir entry, local path or hub id) and load it for inference."""
    resolved = resolve_model(name, models_dir=models_dir, offline=offline)
    torch_dtype = parse_dtype(dtype)
    if resolved.kind == "gguf":
        cfg, state_dict, meta = read_gguf(resolved.path)
        model = model_from_hf_state_dict(cfg, state_dict, dtype=torch_dtype)
        tokenizer = Tokenizer.from_gguf(meta)  # parsed metadata: avoids a second slow read
    else:
        model = load_hf_dir(resolved.path, dtype=torch_dtype)
        cfg = model.config
        tokenizer = Tokenizer.from_dir(resolved.path)
    model.requires_grad_(False)
    return LoadedModel(resolved.name, model, tokenizer, cfg, resolved.path)
