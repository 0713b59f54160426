"""HTTP plumbing of the web app's API (/api): body size limit, JSON bodies, errors, event streams.

The app API answers bad input the way form-like APIs do: an oversized body is a 413, a body that
is not JSON or does not match the schema a 422 -- always in the server's error shape
`{"error": {"message", "type", "param", "code"}}` (errors.py), so the UI shows one kind of error.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aigc.apps.arena.battles import AlreadyVotedError, ArenaError
from aigc.apps.chat.conversations import NotFoundError
from aigc.apps.chat.replies import ReplyError
from aigc.apps.chat.transcript import TranscriptError
from aigc.apps.studio.catalog import TemplateSpecError
from aigc.apps.studio.library import ReadOnlyTemplateError
from aigc.apps.support.sites import SupportError
from aigc.server.errors import APIError
from aigc.server.sse import sse_data

T = TypeVar("T", bound=BaseModel)

API_PREFIX = "/api/"
DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: a long conversation import fits; a runaway upload does not
DEFAULT_MAX_MODEL_BODY = 8 << 20  # 8 MiB: far more text than any model's window holds
DEFAULT_MAX_UPLOAD = 64 << 20  # knowledge-base uploads


def too_large(limit: int) -> APIError:
    return APIError(413, f"The request body is larger than {limit} bytes.", code="request_too_large")


# The page loads only what this server serves; nothing may frame it (clickjacking).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                     (b"referrer-policy", b"same-origin")]


class SecurityHeadersMiddleware:
    """nosniff, no framing and a same-origin referrer on every response; a Content-Security-Policy
    on HTML pages."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += _SECURITY_HEADERS
                if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                    headers.append((b"content-security-policy", CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimitMiddleware:
    """Refuse request bodies over a limit with a 413 before any route reads them: `limit` bytes for
    the app's /api and the support widget's /widget, `model_limit` for the model routes (/v1, /tokenize, /detokenize).

    The body is read here (at most the limit is held) and replayed to the route; after that,
    `receive` goes to the server again, so streaming routes still hear about a disconnect.
    """

    def __init__(self, app: ASGIApp, limit: int = DEFAULT_MAX_BODY, model_limit: int = DEFAULT_MAX_MODEL_BODY,
                 upload_limit: int = DEFAULT_MAX_UPLOAD):
        self.app = app
        self.limits = ((API_PREFIX, limit), ("/widget/", limit), ("/v1", model_limit), ("/tokenize", model_limit),
                       ("/detokenize", model_limit))
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        limit = next((n for prefix, n in self.limits if path.startswith(prefix)), None) \
            if scope["type"] == "http" else None
        if limit is not None and path.startswith("/api/knowledge-bases/") and path.endswith("/documents"):
            limit = self.upload_limit  # document uploads: several files of up to 20 MiB
        if limit is None:
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send, limit)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large(limit).response()(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending its body
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await too_large(limit).response()(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _validation_error(e: ValidationError) -> APIError:
    first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid value"}
    param = ".".join(str(p) for p in first.get("loc", ())) or None
    msg = str(first.get("msg", "invalid value"))
    if first.get("type") == "missing":
        return APIError(422, f"Missing required field: '{param}'.", param=param, code="missing_field")
    return APIError(422, f"Invalid value for '{param}': {msg}" if param else f"Invalid body: {msg}",
                    param=param, code="invalid_value")


async def read_json(request: Request) -> Any:
    """The request body as JSON (422 if it is not)."""
    body = await request.body()
    try:
        return json.loads(body) if body.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(422, f"The request body is not valid JSON: {e}", code="invalid_json") from None


async def read_body(request: Request, model: type[T]) -> T:
    """The request body validated into `model` (422 naming the first bad field)."""
    data = await read_json(request)
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _validation_error(e) from None


def path_id(value: str, kind: str) -> int:
    """Path ids: anything that is not a known id is a 404 (not a validation error)."""
    if not (value.isascii() and value.isdigit()) or len(value) > 18:  # "¹".isdigit() is True too
        raise NotFoundError(kind, value)
    return int(value)


def event_bytes(event: dict[str, Any]) -> bytes:
    return sse_data(json.dumps(event, ensure_ascii=False, separators=(",", ":")))


async def as_sse(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for event in events:
        yield event_bytes(event)


def install_app_error_handlers(app: FastAPI) -> None:
    """The apps' own exceptions -> API errors (the server's handlers cover everything else)."""

    def handler(status: int, code: str):
        async def handle(request: Request, exc: Exception) -> JSONResponse:
            return APIError(status, str(exc), param=getattr(exc, "param", None),
                            code=getattr(exc, "code", None) or code).response()
        return handle

    app.add_exception_handler(NotFoundError, handler(404, "not_found"))
    app.add_exception_handler(ReplyError, handler(400, "invalid_request"))
    app.add_exception_handler(TranscriptError, handler(422, "invalid_conversation"))
    app.add_exception_handler(TemplateSpecError, handler(422, "invalid_template"))
    app.add_exception_handler(ReadOnlyTemplateError, handler(403, "read_only_template"))
    app.add_exception_handler(SupportError, handler(400, "invalid_value"))
    app.add_exception_handler(AlreadyVotedError, handler(409, "already_voted"))
    app.add_exception_handler(ArenaError, handler(400, "invalid_value"))
