"""One record per HTTP request: filled by the routes, then logged (one line) and counted in metrics.

`RequestLogMiddleware` creates the record before anything else runs (auth included, so 401s are
counted too), puts it in `scope["state"]`, and finishes it when the response has been sent in
full, which for a stream is after `[DONE]` or the client's disconnect.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aigc.server.metrics import CLIENT_CLOSED, ServerMetrics

log = logging.getLogger("aigc.server.requests")

_QUIET_PATHS = ("/health", "/metrics")  # polled constantly: neither logged nor counted
_STATE_KEY = "aigc_request_record"


@dataclass
class RequestRecord:
    id: str
    method: str
    path: str
    start: float = field(default_factory=time.perf_counter)
    endpoint: str = ""  # the route's template: bounded label values for metrics
    model: str = ""  # set only for a served model (clients cannot grow the label set)
    status: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    ttft_s: float | None = None
    total_s: float = 0.0
    disconnected: bool = False
    error: str | None = None
    error_code: str | None = None  # the error body's `code` (or `type`): what the dashboard groups errors by
    itl_samples: list[float] = field(default_factory=list)
    _last_token_at: dict[int, float] = field(default_factory=dict)

    def tokens_arrived(self, index: int, count: int) -> None:
        """`count` new tokens of choice `index` arrived now: time to first token and inter-token gaps."""
        if count <= 0:
            return
        now = time.perf_counter()
        if self.ttft_s is None:
            self.ttft_s = now - self.start
        last = self._last_token_at.get(index)
        if last is not None:
            # Several tokens in one delta (a stop-string hold-back released) share the gap.
            self.itl_samples.extend([(now - last) / count] * count)
        self._last_token_at[index] = now

    @property
    def final_status(self) -> int:
        """The status as counted: a client that went away is a 499 whatever was sent before."""
        return CLIENT_CLOSED if self.disconnected else self.status

    def note_error_body(self, body: bytes) -> None:
        """Read the error's code from a JSON error body (the OpenAI shape; one place for every error,
        whether a route, a handler or a middleware answered it)."""
        if self.error_code is not None or not body.startswith(b"{") or len(body) > 65536:
            return
        try:
            error = json.loads(body).get("error")
        except (ValueError, AttributeError):
            return
        if isinstance(error, dict):
            code = error.get("code") or error.get("type")
            self.error_code = str(code)[:64] if code else None

    def line(self) -> str:
        fields = {
            "id": self.id, "method": _safe(self.method), "path": _safe(self.path), "model": _safe(self.model) or "-",
            "status": self.status, "disconnected": str(self.disconnected).lower(),
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "ttft_ms": f"{self.ttft_s * 1000:.1f}" if self.ttft_s is not None else "-",
            "total_ms": f"{self.total_s * 1000:.1f}",
        }
        if self.error:
            fields["error"] = '"' + _safe(self.error, quoted=True).replace('"', "'")[:200] + '"'
        return "request " + " ".join(f"{k}={v}" for k, v in fields.items())


# Control characters (a newline in a path would start a forged log line) and spaces (which
# separate the line's fields) are written as escapes.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_UNQUOTED = _CONTROL | {0x20: "%20"}


def _safe(value: str, quoted: bool = False) -> str:
    return value.translate(_CONTROL if quoted else _UNQUOTED)


def request_record(request: Request) -> RequestRecord:
    """The current request's record (a detached one when the middleware is not installed)."""
    record = request.scope.get("state", {}).get(_STATE_KEY)
    if record is None:
        record = RequestRecord(uuid.uuid4().hex, request.method, request.url.path)
    return record


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _QUIET_PATHS:
            await self.app(scope, receive, send)
            return
        record = RequestRecord(uuid.uuid4().hex, scope["method"], scope["path"])
        scope.setdefault("state", {})[_STATE_KEY] = record

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", record.id.encode())]
            elif message["type"] == "http.response.body" and record.status >= 400:
                record.note_error_body(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except Exception as e:
            record.status = record.status or 500
            record.error = record.error or f"{type(e).__name__}: {e}"
            record.error_code = record.error_code or "internal_error"
            raise
        finally:
            record.total_s = time.perf_counter() - record.start
            if not record.endpoint:
                route = scope.get("route")
                record.endpoint = getattr(route, "path", None) or "other"
            self.metrics.observe(record)
            level = logging.WARNING if record.status >= 500 else logging.INFO
            log.log(level, record.line())
