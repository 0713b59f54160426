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
