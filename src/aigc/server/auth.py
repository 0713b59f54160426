"""API keys: `Authorization: Bearer KEY` on the API routes when keys are configured.

A plain ASGI middleware (not a route dependency) so the key is checked before anything else,
body parsing included: a caller without a key learns only that it needs one. `/health`,
`/metrics` and static files stay open; the API prefixes are guarded.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from aigc.server.errors import APIError

PROTECTED_PREFIXES = ("/v1", "/tokenize", "/detokenize", "/api")


def key_matches(presented: str, keys: Iterable[str]) -> bool:
    """Constant-time comparison against every key (no early exit that would leak which matched)."""
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(presented.encode(), key.encode())
    return ok


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str], prefixes: tuple[str, ...] = PROTECTED_PREFIXES):
        self.app = app
        self.keys = [k for k in keys if k]
        self.prefixes = prefixes

    def _guarded(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["method"] == "OPTIONS" or not self._guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = bearer_token(headers.get("authorization"))
        if token is None:
            error = APIError(401, "Missing API key: send it as 'Authorization: Bearer KEY'.", code="missing_api_key",
                             headers={"WWW-Authenticate": "Bearer"})
        elif not key_matches(token, self.keys):
            error = APIError(401, "Incorrect API key provided.", code="invalid_api_key",
                             headers={"WWW-Authenticate": "Bearer"})
        else:
            await self.app(scope, receive, send)
            return
        await error.response()(scope, receive, send)
