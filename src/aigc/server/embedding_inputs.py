"""What every embedding backend does with a /v1/embeddings request: inputs (a string, strings, token
ids, lists of token ids) to checked token-id lists, and vectors to OpenAI's response body."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from aigc.server.errors import APIError, bad_request
from aigc.server.schemas import EmbeddingRequest

MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit per request


def embedding_inputs(req: EmbeddingRequest, encode: Callable[[str], list[int]], vocab_size: int,
                     max_tokens: int, dimensions: int) -> list[list[int]]:
    """Token ids per input; every client mistake is a 400 naming its parameter."""
    if req.dimensions is not None and req.dimensions > dimensions:
        raise bad_request(f"dimensions must be <= {dimensions} for this model, got {req.dimensions}.",
                          param="dimensions")
    raw: Any = req.input
    if isinstance(raw, str):
        raw = [raw]
    if not raw:
        raise bad_request("'input' is empty: send a string, a list of strings or token ids.", param="input")
    if all(isinstance(v, int) for v in raw):
        raw = [raw]
    if len(raw) > MAX_EMBEDDING_INPUTS:
        raise bad_request(f"'input' has {len(raw)} items; at most {MAX_EMBEDDING_INPUTS} are allowed.",
                          param="input")
    ids: list[list[int]] = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            if not item:
                raise bad_request(f"input[{i}] is an empty string.", param="input")
            tokens = encode(item)
        else:
            tokens = list(item)
            if not tokens:
                raise bad_request(f"input[{i}] is an empty list of token ids.", param="input")
            bad = next((t for t in tokens if not 0 <= t < vocab_size), None)
            if bad is not None:
                raise bad_request(f"input[{i}] has token id {bad}, outside the vocabulary (size {vocab_size}).",
                                  param="input")
        if len(tokens) > max_tokens:
            raise APIError(400, f"input[{i}] has {len(tokens)} tokens; this model takes at most "
                           f"{max_tokens}.", param="input", code="context_length_exceeded")
        ids.append(tokens)
    return ids


def embedding_body(model: str, req: EmbeddingRequest, vectors: Sequence[np.ndarray], tokens: int) -> dict[str, Any]:
    base64_out = req.encoding_format == "base64"  # what the official client asks for by default
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.astype(np.float32).tobytes()).decode() if base64_out else v.tolist()}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
