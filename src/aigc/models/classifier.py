"""Sequence classifier: our decoder plus a linear `score` head on the last real token's hidden state.

Saved in the Hugging Face `*ForSequenceClassification` layout (decoder weights under the causal LM's
names without the LM head, `score.weight`, `id2label`/`label2id` and `pad_token_id` in config.json),
so `transformers.AutoModelForSequenceClassification.from_pretrained(dir)` opens it with the same
outputs. Texts are encoded as the HF tokenizer encodes them by default (`add_special_tokens=True`)
and batched with right padding: a causal model's last real token never sees the padding, so no
attention mask is needed, and the pooled position is simply length - 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from aigc.models.config import FAMILY_TO_HF, ModelConfig
from aigc.models.hf_checkpoint import (
    CheckpointError,
    model_from_hf_state_dict,
    native_to_hf,
    read_hf_state_dict,
)
from aigc.models.transformer import Transformer


def seq_cls_architecture(cfg: ModelConfig) -> str:
    return "GPT2ForSequenceClassification" if cfg.is_gpt2 else FAMILY_TO_HF[cfg.family].replace(
        "ForCausalLM", "ForSequenceClassification")


def is_classifier_dir(path: str | Path) -> bool:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        archs = json.loads(cfg.read_text(encoding="utf-8")).get("architectures") or []
    except json.JSONDecodeError:
        return False
    return any(a.endswith("ForSequenceClassification") for a in archs)


class SequenceClassifier(nn.Module):
    def __init__(self, backbone: Transformer, labels: list[str], pad_token_id: int, config: ModelConfig | None = None,
                 multi_label: bool = False):
        super().__init__()
        if len(labels) < (1 if multi_label else 2):
            raise ValueError(f"a classifier needs at least 2 labels, got {labels}")
        # multi-label: each label is a yes/no of its own (sigmoid per label, trained with binary
        # cross-entropy), as transformers' problem_type "multi_label_classification".
        self.multi_label = multi_label
        self.config = config or backbone.config  # as saved (the backbone may be built with a tied head)
        self.labels = list(labels)
        self.pad_token_id = pad_token_id
        self.backbone = backbone
        backbone.lm_head = None  # the vocabulary projection is not used (tied weights stay in tok_emb)
        self.score = nn.Linear(self.config.hidden_size, len(labels), bias=False,
                               device=backbone.device, dtype=backbone.dtype)
        nn.init.normal_(self.score.weight, std=0.02)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def pooled(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Final hidden state [B, D] of each row's last real token (right-padded `input_ids` [B, T])."""
        h = self.backbone.hidden_states(input_ids)
        return h[torch.arange(h.shape[0], device=h.device), lengths.to(h.device) - 1]

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_labels] for right-padded `input_ids` [B, T] with real lengths [B]."""
        return self.score(self.pooled(input_ids, lengths))

    # ---- HF directory I/O ---------------------------------------------------------------------

    def hf_config(self, dtype: torch.dtype) -> dict:
        d = self.config.replace(torch_dtype=str(dtype).replace("torch.", "")).to_hf_dict()
        d["architectures"] = [seq_cls_architecture(self.config)]
        d["id2label"] = {str(i): lab for i, lab in enumerate(self.labels)}
        d["label2id"] = {lab: i for i, lab in enumerate(self.labels)}
        d["pad_token_id"] = self.pad_token_id
        d["problem_type"] = "multi_label_classification" if self.multi_label else "single_label_classification"
        return d

    def save_pretrained(self, path: str | Path, tokenizer=None, dtype: torch.dtype | None = None) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        sd = {k: v.detach() for k, v in self.backbone.state_dict().items()}
        # Tied view: native_to_hf then leaves the (absent) LM head out.
        hf = native_to_hf(self.config.replace(tie_word_embeddings=True), sd)
        hf["score.weight"] = self.score.weight.detach()
        dtype = dtype or next(iter(hf.values())).dtype
        hf = {k: v.to(dtype).contiguous().clone() for k, v in hf.items()}
        tmp = path / "model.safetensors.tmp"
        save_file(hf, str(tmp), metadata={"format": "pt"})
        tmp.replace(path / "model.safetensors")
        (path / "config.json").write_text(json.dumps(self.hf_config(dtype), indent=2, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save_pretrained(path)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | None = None) -> SequenceClassifier:
        path = Path(path)
        if not is_classifier_dir(path):
            raise CheckpointError(f"{path}: not a sequence-classification model directory "
                                  "(config.json with a *ForSequenceClassification architecture)")
        d = json.loads((path / "config.json").read_text(encoding="utf-8"))
        id2label = d.get("id2label") or {}
        labels = [id2label[k] for k in sorted(id2label, key=int)]
        cfg = ModelConfig.from_hf_dict(d)
        for key in ("id2label", "label2id", "problem_type", "num_labels"):
            cfg.extra.pop(key, None)
        sd = read_hf_state_dict(path)
        score = sd.pop("score.weight", None)
        if score is None:
            raise CheckpointError(f"{path}: no score.weight (the classification head) in the checkpoint")
        if score.shape[0] != len(labels):
            raise CheckpointError(f"{path}: score.weight has {score.shape[0]} rows but id2label {len(labels)} labels")
        sd.pop("lm_head.weight", None)
        backbone = model_from_hf_state_dict(cfg.replace(tie_word_embeddings=True), sd)
        pad = d.get("pad_token_id")
        model = cls(backbone, labels, pad if pad is not None else 0, config=cfg,
                    multi_label=d.get("problem_type") == "multi_label_classification")
        with torch.no_grad():
            model.score.weight.copy_(score.to(model.score.weight.dtype))
        if dtype is not None:
            model = model.to(dtype)
        return model.eval()


def encode_texts(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Ids as the HF tokenizer gives them by default (special tokens added), cut to max_length."""
    ids = tokenizer.encode_batch(list(texts), add_special_tokens=True)
    out = []
    for i, row in enumerate(ids):
        if not row:
            raise ValueError(f"text {i} encodes to no tokens")
        out.append(row[:max_length])
    return out


def right_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [B, T] padded on the right, lengths [B])."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, torch.tensor([len(r) for r in rows], dtype=torch.long)


@torch.no_grad()
def pooled_features(model: SequenceClassifier, token_rows: list[list[int]], batch_size: int = 32,
                    autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Pooled hidden states [N, D] (float32, on the model's device); rows are batched by length."""
    model.eval()
    order = sorted(range(len(token_rows)), key=lambda i: len(token_rows[i]))
    dev = model.device
    out = torch.empty(len(token_rows), model.config.hidden_size, device=dev)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, lengths = right_pad([token_rows[i] for i in idx], model.pad_token_id)
        with torch.autocast(dev.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out[torch.tensor(idx, device=dev)] = model.pooled(ids.to(dev), lengths.to(dev)).float()
    return out


@torch.no_grad()
def predict_probs(model: SequenceClassifier, token_rows: list[list[int]], batch_size: int = 32,
                  autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Class probabilities [N, num_labels] (float32, CPU); multi-label: each label's own probability."""
    feats = pooled_features(model, token_rows, batch_size, autocast_dtype)
    logits = model.score(feats.to(model.score.weight.dtype)).float()
    return (torch.sigmoid(logits) if model.multi_label else F.softmax(logits, dim=-1)).cpu()
