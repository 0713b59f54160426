"""Text a request carries must be text: JSON may spell a lone UTF-16 surrogate ("\\udcff"), which
Python decodes into a `str` that no tokenizer, database or encoder accepts. This ASGI middleware
answers such a body with a 400 naming the top-level field, before any route sees it (OpenAI
answers 400 too). Bodies without a `\\ud8..\\udf` escape pass through untouched and unparsed.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aigc.server.errors import bad_request

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
CHECK_LIMIT = 16 << 20  # bigger bodies stream through unchecked (their routes have size limits)


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def lone_surrogate_field(body: bytes) -> str | None:
    """The top-level field of a JSON body that holds a lone surrogate ("" for the body itself), or None."""
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None  # not JSON: the route's own parsing answers that
    if isinstance(data, dict):
        return next((str(k) for k, v in data.items() if _has_lone_surrogate(k) or _has_lone_surrogate(v)), None)
    return "" if _has_lone_surrogate(data) else None


def url_text_problem(scope: Scope) -> str | None:
    """Why the path or query string is not text (bytes that are not UTF-8, a NUL), or None."""
    parts = ((scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape"), "path"),
             (scope.get("query_string", b""), "query string"))
    for raw, name in parts:
        if b"%" not in raw and b"\x00" not in raw:
            continue
        try:
            text = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return f"the {name} is not valid UTF-8 text"
        if "\x00" in text:
            return f"the {name} contains a NUL character"
    return None


class TextCheckMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = url_text_problem(scope)
            if problem is not None:
                await bad_request(f"Invalid request: {problem}.", code="invalid_value").response()(scope, receive, send)
                return
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
            if more and sum(map(len, chunks)) > CHECK_LIMIT:
                replay = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
                await self.app(scope, _replay(replay, receive), send)
                return
        body = b"".join(chunks)
        json_body = b"json" in dict(scope["headers"]).get(b"content-type", b"")
        if json_body and scope["path"].startswith("/api") and _NUL_ESCAPE.search(body):
            # The app stores what it is sent, and PostgreSQL's text cannot hold a NUL.
            error = bad_request("Invalid body: the text contains a NUL character (\\u0000).", code="invalid_value")
            await error.response()(scope, receive, send)
            return
        field = lone_surrogate_field(body)
        if field is not None:
            where = f"'{field}'" if field else "the body"
            error = bad_request(f"Invalid value for {where}: the text contains a lone UTF-16 surrogate "
                                "escape (\\ud800-\\udfff), which is not a character.", param=field or None,
                                code="invalid_value")
            await error.response()(scope, receive, send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
