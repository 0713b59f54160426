"""POST /v1/embeddings (OpenAI's shape): strings or token ids in, one vector per input out, as float
lists or base64 float32 (what the official client asks for by default). Local decoder models pool
their hidden states (engine/embeddings.py); remote models answer for themselves.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from aigc.server.backends import LocalBackend
from aigc.server.errors import APIError, bad_request
from aigc.server.openai_routes import begin
from aigc.server.remote import RemoteBackend

router = APIRouter()
MAX_INPUTS = 2048  # OpenAI's limit per request


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


def _token_inputs(req: EmbeddingRequest, backend: LocalBackend) -> list[list[int]]:
    raw: Any = req.input
    if isinstance(raw, str):
        raw = [raw]
    if not raw:
        raise bad_request("'input' is empty: send a string, a list of strings or token ids.", param="input")
    if all(isinstance(v, int) for v in raw):
        raw = [raw]
    if len(raw) > MAX_INPUTS:
        raise bad_request(f"'input' has {len(raw)} items; at most {MAX_INPUTS} are allowed.", param="input")
    vocab = backend.tokenizer.vocab_size
    ids: list[list[int]] = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            if not item:
                raise bad_request(f"input[{i}] is an empty string.", param="input")
            tokens = backend.tokenizer.encode(item, add_special_tokens=True)
        else:
            tokens = list(item)
            if not tokens:
                raise bad_request(f"input[{i}] is an empty list of token ids.", param="input")
            bad = next((t for t in tokens if not 0 <= t < vocab), None)
            if bad is not None:
                raise bad_request(f"input[{i}] has token id {bad}, outside the vocabulary (size {vocab}).",
                                  param="input")
        if len(tokens) > backend.max_context:
            raise APIError(400, f"input[{i}] has {len(tokens)} tokens; this model takes at most "
                           f"{backend.max_context}.", param="input", code="context_length_exceeded")
        ids.append(tokens)
    return ids


@router.post("/v1/embeddings", response_model=None)
async def embeddings(req: EmbeddingRequest, request: Request) -> Response:
    record, backend = begin(request, "/v1/embeddings", req.model)
    if isinstance(backend, RemoteBackend):
        return await backend.forward(request, "embeddings", req.model_dump(exclude_unset=True), record)
    size = backend.engine.embedding_size
    if req.dimensions is not None and req.dimensions > size:
        raise bad_request(f"dimensions must be <= {size} for this model, got {req.dimensions}.", param="dimensions")
    ids = _token_inputs(req, backend)
    vectors = await run_in_threadpool(backend.engine.embed, ids, req.dimensions)
    record.prompt_tokens = sum(len(t) for t in ids)
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.tobytes()).decode() if req.encoding_format == "base64" else v.tolist()}
            for i, v in enumerate(vectors)]
    return JSONResponse({"object": "list", "data": data, "model": backend.name,
                         "usage": {"prompt_tokens": record.prompt_tokens, "total_tokens": record.prompt_tokens}})
