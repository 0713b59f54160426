"""POST /v1/embeddings (OpenAI's shape): strings or token ids in, one vector per input out, as float
lists or base64 float32 (what the official client asks for by default). Local decoder models pool
their hidden states (engine/embeddings.py, through LocalBackend.embeddings); embedding models
(sentence-transformers encoders, embedding_backend.py) pool as they were trained; remote models
answer for themselves.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from aigc.server.schemas import EmbeddingRequest
from aigc.server.serving import begin

router = APIRouter()


@router.post("/v1/embeddings", response_model=None)
async def embeddings(req: EmbeddingRequest, request: Request) -> Response:
    record, backend = begin(request, "/v1/embeddings", req.model, embeddings=True)
    body = await backend.embeddings(req)
    record.prompt_tokens = int((body.get("usage") or {}).get("prompt_tokens") or 0)
    return JSONResponse(body)
