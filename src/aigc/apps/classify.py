"""Text classification with a fine-tuned classifier directory (what `POST /v1/classify` and
`aigc classify` answer with).

    clf = Classifier.load("runs/sentiment")
    clf.classify(["great movie", "boring"])
    # [{"label": "pos", "probabilities": {"neg": 0.03, "pos": 0.97}}, ...]

Thread-safe for concurrent readers (inference only, no state changes); a server should run
`classify` in a worker thread since it computes on the CPU/GPU synchronously.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from aigc.models.classifier import SequenceClassifier, encode_texts, is_classifier_dir, predict_probs
from aigc.models.hf_checkpoint import parse_dtype
from aigc.tokenizer import Tokenizer

MAX_TEXTS = 256  # per call; a server maps a longer list to a 400 error


class Classifier:
    def __init__(self, model: SequenceClassifier, tokenizer: Tokenizer, name: str = "classifier",
                 max_length: int | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length or model.config.context_length

    @classmethod
    def load(cls, path: str | Path, *, dtype: str | torch.dtype = "float32", device: str = "cpu",
             max_length: int | None = None) -> Classifier:
        """Open a directory written by `aigc train classify` (or any HF *ForSequenceClassification dir
        of a supported family with a tokenizer.json)."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"classifier directory not found: {path}")
        if not is_classifier_dir(path):
            raise ValueError(f"{path} is not a classifier (its config.json has no *ForSequenceClassification "
                             "architecture); train one with `aigc train classify`")
        model = SequenceClassifier.from_pretrained(path, dtype=parse_dtype(dtype)).to(device)
        return cls(model, Tokenizer.from_dir(path), name=path.name, max_length=max_length)

    @property
    def labels(self) -> list[str]:
        return list(self.model.labels)

    def classify(self, texts: list[str], batch_size: int = 32) -> list[dict[str, Any]]:
        """For each text: {"label": best label, "probabilities": {label: probability}}."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return []
        if len(texts) > MAX_TEXTS:
            raise ValueError(f"at most {MAX_TEXTS} texts per call, got {len(texts)}")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise ValueError(f"text {bad[0]} is empty or not a string")
        probs = predict_probs(self.model, encode_texts(self.tokenizer, texts, self.max_length), batch_size)
        out = []
        for row in probs.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            out.append({"label": self.labels[best],
                        "probabilities": {lab: round(p, 6) for lab, p in zip(self.labels, row, strict=True)}})
        return out
