"""The OpenAI API routes: /v1/models, /v1/completions, /v1/chat/completions, /tokenize, /detokenize.

Thin on purpose: each validates its body (schemas.py) and hands it to the serving layer
(serving.py), which runs it on the model's backend -- a local engine or a remote server, through
the same protocol (generation.py) -- and answers as JSON or server-sent events.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from aigc.server.backends import ModelBackends
from aigc.server.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    ModelCard,
    ModelList,
    TokenizeRequest,
)
from aigc.server.serving import begin, serve_chat, serve_completion

router = APIRouter()


def _backends(request: Request) -> ModelBackends:
    return request.app.state.backends


@router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    return ModelList(data=[b.card() for b in _backends(request).all()])


@router.get("/v1/models/{model:path}")
async def get_model(model: str, request: Request) -> ModelCard:
    return _backends(request).get(model).card()


@router.post("/v1/completions", response_model=None)
async def completions(req: CompletionRequest, request: Request) -> Response:
    return await serve_completion(request, req)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(req: ChatCompletionRequest, request: Request) -> Response:
    return await serve_chat(request, req)


@router.post("/tokenize", response_model=None)
async def tokenize(req: TokenizeRequest, request: Request) -> Response:
    record, backend = begin(request, "/tokenize", req.model)
    body = await backend.tokenize(req)
    record.prompt_tokens = int(body.get("count") or 0)
    return JSONResponse(body)


@router.post("/detokenize", response_model=None)
async def detokenize(req: DetokenizeRequest, request: Request) -> Response:
    _, backend = begin(request, "/detokenize", req.model)
    return JSONResponse(await backend.detokenize(req))
