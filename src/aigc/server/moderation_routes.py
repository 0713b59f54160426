"""POST /v1/moderations in OpenAI's shape, answered by our own moderation model (local: no text
leaves the machine). The official client's `client.moderations.create(input=...)` works as is.

    {"input": "text" | ["text", ...] | [{"type": "text", "text": ...}], "model": "omni-moderation-latest"?}
 -> {"id": "modr-...", "model": "aigc-moderation", "results": [{"flagged", "categories",
     "category_scores", "category_applied_input_types"}, ...]}

OpenAI's model names (omni-moderation-latest, text-moderation-latest, ...) are answered by the
served moderation model, so clients written for OpenAI need no change.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from aigc.safety.moderation import CATEGORIES, DEFAULT_MODEL, MODEL_DIR, ModerationError, Moderator
from aigc.server.errors import APIError

router = APIRouter()

OPENAI_NAMES = ("omni-moderation-latest", "omni-moderation-2024-09-26", "text-moderation-latest",
                "text-moderation-stable", "text-moderation-007")
MAX_INPUTS = 64
MAX_CHARS = 200_000
_LOAD_LOCK = threading.Lock()  # two first requests at once load the model once


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    input: str | list[Any] = Field(description="a text, a list of texts, or a list of {type: text, text} parts")
    model: str | None = None


def moderator_of(app: Any) -> Moderator:
    """The server's moderation model, loaded on first use (a server that never moderates never loads it)."""
    state = app.state
    with _LOAD_LOCK:
        moderator = getattr(state, "moderator", None)
        if moderator is None:
            settings = state.settings
            path = getattr(settings, "moderation_model", None) or MODEL_DIR
            try:
                moderator = Moderator(path)
            except ModerationError as e:
                raise APIError(503, str(e), code="moderation_unavailable") from None
            state.moderator = moderator
        return moderator


def _texts(value: str | list[Any]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not value:
        raise APIError(400, "`input` must hold at least one text.", param="input", code="invalid_value")
    if len(value) > MAX_INPUTS:
        raise APIError(400, f"At most {MAX_INPUTS} inputs per request.", param="input", code="too_many_inputs")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            out.append(item["text"])
        elif isinstance(item, dict) and item.get("type") == "image_url":
            raise APIError(400, "This server moderates text only; image inputs are not supported.",
                           param=f"input[{i}]", code="unsupported_input_type")
        else:
            raise APIError(400, "Each input must be a string or {\"type\": \"text\", \"text\": ...}.",
                           param=f"input[{i}]", code="invalid_value")
    return out


@router.post("/v1/moderations")
async def moderations(req: ModerationRequest, request: Request) -> JSONResponse:
    moderator = moderator_of(request.app)
    if req.model not in (None, moderator.name, DEFAULT_MODEL, *OPENAI_NAMES):
        raise APIError(404, f"The moderation model `{req.model}` does not exist; this server moderates with "
                            f"`{moderator.name}` (OpenAI's names are accepted for it).", param="model",
                       code="model_not_found")
    texts = _texts(req.input)
    if sum(len(t) for t in texts) > MAX_CHARS:
        raise APIError(400, f"The inputs are longer than {MAX_CHARS} characters in all.", param="input",
                       code="input_too_long")
    results = await run_in_threadpool(moderator.check, texts)
    request.app.state.metrics.moderation(results, source="api", action="none")
    return JSONResponse({"id": f"modr-{uuid.uuid4().hex}", "model": moderator.name,
                         "results": [r.to_openai() for r in results]})


@router.get("/api/moderation/events")
async def moderation_events(request: Request, category: str | None = None, limit: int = 200) -> JSONResponse:
    """The moderation log, for administrators: recent flagged texts and counts per category and action."""
    from aigc.safety.events import ModerationLog
    from aigc.server.auth import principal_of

    if not principal_of(request).is_admin:
        raise APIError(403, "Only administrators see the moderation log.", code="admin_only")
    if category is not None and category not in CATEGORIES:
        raise APIError(400, f"unknown category {category!r}", param="category", code="invalid_value")
    log = ModerationLog(request.app.state.webapp.db)
    body = await run_in_threadpool(log.recent, max(1, min(limit, 1000)), category)
    policy = request.app.state.moderation_policy
    return JSONResponse({**body, "mode": policy.mode, "store_text": policy.store_text})
