"""POST /v1/classify: label texts with a served classifier (a model trained by `aigc train classify`).

    {"model": "sentiment", "input": "great movie"}            (or a list of up to 256 texts)
 -> {"object": "list", "model": "sentiment",
     "data": [{"index": 0, "label": "pos", "probabilities": {"neg": 0.03, "pos": 0.97}}], "usage": {...}}
"""

from __future__ import annotations

import asyncio
import time
import uuid

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from aigc.server.backends import ClassifierBackend, ModelBackends
from aigc.server.errors import APIError

router = APIRouter()


class ClassifyRequest(BaseModel):
    model: str
    input: str | list[str] = Field(description="a text or a list of texts")
    user: str | None = None


class ClassifyResult(BaseModel):
    index: int
    label: str
    probabilities: dict[str, float]


class ClassifyUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class ClassifyResponse(BaseModel):
    id: str
    object: str = "list"
    created: int
    model: str
    data: list[ClassifyResult]
    usage: ClassifyUsage


@router.post("/v1/classify")
async def classify(req: ClassifyRequest, request: Request) -> ClassifyResponse:
    backends: ModelBackends = request.app.state.backends
    backend = backends.get(req.model)
    if not isinstance(backend, ClassifierBackend):
        raise APIError(400, f"The model `{req.model}` is not a classifier; serve a directory written by "
                            "`aigc train classify`.", param="model", code="model_not_classifier")
    texts = [req.input] if isinstance(req.input, str) else list(req.input)
    if not texts:
        raise APIError(400, "`input` must hold at least one text.", param="input")
    clf = backend.classifier
    try:
        # The forward pass is synchronous CPU/GPU work: keep it off the event loop.
        results = await asyncio.to_thread(clf.classify, texts)
    except ValueError as e:
        raise APIError(400, str(e), param="input") from None
    tokens = sum(len(clf.tokenizer.encode(t)) for t in texts)
    return ClassifyResponse(
        id=f"classify-{uuid.uuid4().hex[:24]}", created=int(time.time()), model=backend.name,
        data=[ClassifyResult(index=i, **r) for i, r in enumerate(results)],
        usage=ClassifyUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
