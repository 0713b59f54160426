"""Embedding models: encoder checkpoints in the sentence-transformers layout (BERT, RoBERTa,
XLM-RoBERTa, MPNet ... e.g. all-MiniLM-L6-v2, multilingual-e5, bge), served by /v1/embeddings.

A directory with `config.json` (an encoder `model_type`), `model.safetensors` and `tokenizer.json`;
`modules.json` + `1_Pooling/config.json` say how token vectors become one (mean, CLS, max or last
token; mean when absent) and `sentence_bert_config.json` the maximum sequence length. The network
is transformers' own implementation (`AutoModel`): encoders are not what our decoder engine is
for, and transformers runs every encoder family exactly as it was trained. Vectors are always
L2-normalised (as OpenAI's are), so a dot product is the cosine similarity.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ENCODER_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "camembert",
                           "deberta-v2", "nomic_bert", "new"})
POOLING_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                 "pooling_mode_max_tokens": "max", "pooling_mode_lasttoken": "last"}


class EncoderError(ValueError):
    """A directory that is not a usable embedding model; the message says why."""


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, json.JSONDecodeError) as e:
        raise EncoderError(f"{path}: not readable JSON ({e})") from None


def is_encoder_dir(path: str | Path) -> bool:
    """A checkpoint whose config names an encoder family (and is not a classifier head)."""
    try:
        config = _json(Path(path) / "config.json")
    except EncoderError:
        return False
    if not isinstance(config, dict):
        return False
    archs = config.get("architectures") or []
    if any(str(a).endswith(("ForSequenceClassification", "ForCausalLM")) for a in archs):
        return False
    return config.get("model_type") in ENCODER_TYPES


def _pooling(folder: Path) -> str:
    modules = _json(folder / "modules.json") or []
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
            config = _json(folder / str(module.get("path", "")) / "config.json") or {}
            chosen = [mode for key, mode in POOLING_MODES.items() if config.get(key)]
            if len(chosen) > 1:
                raise EncoderError(f"{folder}: several pooling modes at once ({chosen}) are not supported")
            if chosen:
                return chosen[0]
    return "mean"


@dataclass
class SentenceEncoder:
    model: Any  # a transformers PreTrainedModel (encoder)
    tokenizer: Any  # tokenizers.Tokenizer, with the model's special tokens added by its post-processor
    pooling: str
    max_length: int
    dimensions: int
    pad_id: int

    @classmethod
    def load(cls, path: str | Path, dtype: str = "float32") -> SentenceEncoder:
        import tokenizers
        import torch
        from transformers import AutoModel

        folder = Path(path)
        if not (folder / "tokenizer.json").is_file():
            raise EncoderError(f"{folder}: no tokenizer.json (a Hugging Face fast-tokenizer file is required)")
        config = _json(folder / "config.json") or {}
        st_config = _json(folder / "sentence_bert_config.json") or {}
        max_length = int(st_config.get("max_seq_length") or config.get("max_position_embeddings") or 512)
        if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
            # RoBERTa positions start after the padding index: two fewer usable positions
            max_length = min(max_length, int(config.get("max_position_embeddings", 514)) - 2)
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            dtype, torch.float32)
        try:
            model = AutoModel.from_pretrained(folder, torch_dtype=torch_dtype)
        except (OSError, ValueError, KeyError) as e:
            raise EncoderError(f"{folder}: the encoder cannot be loaded ({e})") from None
        model.eval()
        tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.no_truncation()  # an input over max_length is refused by the caller, never cut silently
        pad_id = config.get("pad_token_id")
        return cls(model, tokenizer, _pooling(folder), max_length, int(config["hidden_size"]),
                   int(pad_id) if pad_id is not None else 0)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids with the model's special tokens ([CLS] ... [SEP])."""
        return self.tokenizer.encode(text).ids

    def embed(self, inputs: list[list[int]], dimensions: int | None = None, batch_size: int = 32) -> list[np.ndarray]:
        """One L2-normalised float32 vector per input. Inputs are batched by length, so a text's
        vector does not depend on what else was sent (padding is masked out)."""
        import torch

        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        out: list[np.ndarray | None] = [None] * len(inputs)
        with _INFERENCE, torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                width = max(len(inputs[i]) for i in idx)
                ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    ids[row, : len(inputs[i])] = torch.tensor(inputs[i])
                    mask[row, : len(inputs[i])] = 1
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
                pooled = self._pool(hidden, mask)
                if dimensions is not None:
                    pooled = pooled[:, :dimensions]
                pooled = pooled / pooled.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                for row, i in enumerate(idx):
                    out[i] = pooled[row].numpy().astype(np.float32)
        return out  # type: ignore[return-value]

    def _pool(self, hidden, mask):
        import torch

        m = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "max":
            return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        if self.pooling == "last":
            return hidden[torch.arange(hidden.shape[0]), mask.sum(dim=1) - 1]
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


# torch's intra-op pool is shared: one embedding batch at a time keeps latency predictable.
_INFERENCE = threading.Lock()
