"""Who may call the server, and as whom: the one gate in front of every route.

A plain ASGI middleware (not a route dependency), so credentials are checked before anything
else, body parsing included. For the API prefixes (/v1, /tokenize, /detokenize, /api) it decides
the request's `Principal` (accounts/principal.py):

- `Authorization: Bearer KEY`: a server-wide `--api-key` (the single room, admin), or a user's
  API key (`aigc keys create`); anything else is a 401.
- the `aigc_session` cookie of a web login (`POST /api/auth/login`);
- nothing: the single-user app while the server has no accounts and no server key (loopback only,
  see launch.py); once a user exists or a key is set, a 401.

Around that: only the configured Host names are served (loopback names by default on a loopback
bind: a DNS-rebinding page cannot reach the app), and a write to /api must be JSON (or a file
upload) and may not come from another site's page (its Origin must be this server or a
configured CORS origin). Users' requests count against their rate limit and token quota
(accounts/limits.py): 429 in OpenAI's shape with Retry-After and x-ratelimit-* headers.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aigc.accounts.limits import Limit, RateLimiter, UsageBook, parse_limit, seconds_to_midnight
from aigc.accounts.principal import ANONYMOUS, SERVER_KEY, Principal
from aigc.accounts.users import UserStore
from aigc.server.errors import APIError

log = logging.getLogger("aigc.server")

PROTECTED_PREFIXES = ("/v1", "/tokenize", "/detokenize", "/api", "/openapi.json")
PUBLIC_PATHS = ("/api/auth/login", "/api/auth/logout", "/api/auth/me")  # answer for themselves
SESSION_COOKIE = "aigc_session"
_STATE_KEY = "aigc_principal"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
_WRITE_TYPES = ("application/json", "multipart/form-data")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
USERS_CACHE_S = 2.0  # `aigc users add` in another process takes effect within this


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


def principal_of(request: Request) -> Principal:
    """The request's principal (the single room when no gate is installed, as in unit tests)."""
    return request.scope.get("state", {}).get(_STATE_KEY, ANONYMOUS)


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class AccessGate:
    """The server's access state: keys, accounts (in the app database), limits, allowed hosts."""

    def __init__(self, settings: Any, database: Any):
        from aigc.server.launch import is_loopback

        self.settings = settings
        self.server_keys = list(settings.api_keys)
        self._database = database  # () -> Database, opened on first use
        self.rate: Limit | None = parse_limit(settings.rate_limit) if settings.rate_limit else None
        self.quota: Limit | None = parse_limit(settings.token_quota, "tokens") if settings.token_quota else None
        self.limiter = RateLimiter()
        self.logins = RateLimiter()  # failed logins per account and per address
        hosts = [h.lower() for h in settings.allowed_hosts]
        if not hosts and is_loopback(settings.host):
            hosts = list(LOOPBACK_HOSTS)
        self.allowed_hosts = {_host_name(h) for h in hosts} if "*" not in hosts else None
        self._users_checked = (0.0, False)
        self._lock = threading.Lock()

    # ---- accounts -----------------------------------------------------------------------------

    def database_exists(self) -> bool:
        """Whether the app database may hold accounts, without creating a file that is not there."""
        url = str(self.settings.database_url)
        if not url.startswith("sqlite:///") or url in ("sqlite://", "sqlite:///:memory:"):
            return True
        return Path(url[len("sqlite:///"):]).expanduser().exists()

    @property
    def users(self) -> UserStore:
        return UserStore(self._database())

    def users_exist(self) -> bool:
        now = time.monotonic()
        with self._lock:
            at, exist = self._users_checked
            if now - at < USERS_CACHE_S or exist:  # once accounts exist they stay required
                return exist
        exist = self.database_exists() and self.users.count() > 0
        with self._lock:
            self._users_checked = (now, exist)
        return exist

    def forget_users_cache(self) -> None:
        with self._lock:
            self._users_checked = (0.0, False)

    def login_required(self) -> bool:
        return bool(self.server_keys) or self.users_exist()

    def limits_of(self, user: Any) -> tuple[Limit | None, Limit | None]:
        rate = parse_limit(user.rate_limit) if getattr(user, "rate_limit", None) else self.rate
        quota = parse_limit(user.token_quota, "tokens") if getattr(user, "token_quota", None) else self.quota
        return rate, quota

    # ---- resolving a request ------------------------------------------------------------------

    def principal(self, headers: dict[str, str]) -> tuple[Principal | None, Any, APIError | None]:
        """(principal, the user's info or None, or the 401 to answer)."""
        token = bearer_token(headers.get("authorization"))
        if token is not None:
            if self.server_keys and key_matches(token, self.server_keys):
                return SERVER_KEY, None, None
            found = self.users.key_user(token) if self.database_exists() else None
            if found is None and not self.login_required():
                return ANONYMOUS, None, None  # an open server: clients that always send some key work
            if found is None:
                return None, None, APIError(401, "Incorrect API key provided.", code="invalid_api_key",
                                            headers={"WWW-Authenticate": "Bearer"})
            user, key_id = found
            return Principal(user.id, user.name, user.role, key_id, "api_key"), user, None
        session = _cookie(headers.get("cookie", ""), SESSION_COOKIE)
        if session and self.database_exists():
            user = self.users.session_user(session)
            if user is not None:
                return Principal(user.id, user.name, user.role, None, "session"), user, None
        if not self.login_required():
            return ANONYMOUS, None, None
        return None, None, APIError(401, "Missing API key: send it as 'Authorization: Bearer KEY', or log in.",
                                    code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})

    def host_allowed(self, headers: dict[str, str]) -> bool:
        if self.allowed_hosts is None:
            return True
        return _host_name(headers.get("host", "")) in self.allowed_hosts

    def same_site(self, scope: Scope, headers: dict[str, str]) -> bool:
        """A write from this server's own page, a configured CORS origin, or no browser at all."""
        origin = headers.get("origin")
        if origin is None:
            referer = headers.get("referer")
            if referer is None or headers.get("sec-fetch-site") in (None, "same-origin", "none"):
                return True
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        if origin in self.settings.cors_origins:
            return True
        scheme = "https" if headers.get("x-forwarded-proto") == "https" else scope.get("scheme", "http")
        return origin.lower() == f"{scheme}://{headers.get('host', '')}".lower()


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


class AuthMiddleware:
    def __init__(self, app: ASGIApp, gate: AccessGate, prefixes: tuple[str, ...] = PROTECTED_PREFIXES):
        self.app = app
        self.gate = gate
        self.prefixes = prefixes

    def _guarded(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path, method = scope["path"], scope["method"]
        gate = self.gate
        if not gate.host_allowed(headers):
            error = APIError(400, "This server does not serve this Host name (start it with --allowed-host).",
                             code="invalid_host")
            await error.response()(scope, receive, send)
            return
        if method == "OPTIONS" or not self._guarded(path):
            await self.app(scope, receive, send)
            return
        if path.startswith("/api") and method in _UNSAFE:
            error = _write_refusal(scope, headers, gate)
            if error is not None:
                await error.response()(scope, receive, send)
                return
        if path in PUBLIC_PATHS:
            principal, user, error = await run_in_threadpool(gate.principal, headers)
            scope.setdefault("state", {})[_STATE_KEY] = principal  # may be None: the route answers
            await self.app(scope, receive, send)
            return
        principal, user, error = await run_in_threadpool(gate.principal, headers)
        if error is not None:
            await error.response()(scope, receive, send)
            return
        assert principal is not None
        scope.setdefault("state", {})[_STATE_KEY] = principal
        if principal.user_id is None:
            await self.app(scope, receive, send)
            return
        await self._limited(principal, user, scope, receive, send)

    async def _limited(self, principal: Principal, user: Any, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self.gate
        rate, quota = gate.limits_of(user)
        headers: dict[str, str] = {}
        if rate is not None:
            subjects = [("user", principal.user_id)] + ([("key", principal.key_id)] if principal.key_id else [])
            ok, remaining, reset = gate.limiter.check(subjects, rate)  # type: ignore[arg-type]
            headers |= {"x-ratelimit-limit-requests": str(rate.count),
                        "x-ratelimit-remaining-requests": str(remaining),
                        "x-ratelimit-reset-requests": f"{reset:.3f}s"}
            if not ok:
                retry = max(1, round(reset + 0.5))
                await APIError(429, f"Rate limit reached for {principal.name}: {rate.text} requests. Retry in "
                               f"{retry}s.", code="rate_limit_exceeded",
                               headers={**headers, "Retry-After": str(retry)}).response()(scope, receive, send)
                return
        book = UsageBook(gate._database())
        if quota is not None:
            used = await run_in_threadpool(book.tokens_since, principal.user_id, None, quota.seconds)  # type: ignore[arg-type]
            left = max(0, quota.count - used)
            reset_s = seconds_to_midnight()
            headers |= {"x-ratelimit-limit-tokens": str(quota.count), "x-ratelimit-remaining-tokens": str(left),
                        "x-ratelimit-reset-tokens": f"{reset_s}s"}
            if left <= 0:
                await APIError(429, f"Token quota reached for {principal.name}: {quota.text} tokens. It resets at "
                               "midnight UTC.", code="insufficient_quota", type="insufficient_quota",
                               headers={**headers, "Retry-After": str(reset_s)}).response()(scope, receive, send)
                return
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and raw:
                message["headers"] = [*message.get("headers", []), *raw]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            record = scope.get("state", {}).get("aigc_request_record")
            if record is not None and record.model:  # a request a model answered: its tokens count
                try:
                    await run_in_threadpool(book.record, principal.user_id, principal.key_id, record.prompt_tokens,
                                            record.completion_tokens)
                except Exception as e:  # the answer went out; a usage row must not turn it into an error
                    log.warning("usage of %s not recorded: %s", principal.name, e)


def _write_refusal(scope: Scope, headers: dict[str, str], gate: AccessGate) -> APIError | None:
    """Cross-site writes and non-JSON bodies to /api are refused (browsers send a 'simple' text/plain
    POST to any site without asking; JSON or an Origin check stops it)."""
    if not gate.same_site(scope, headers):
        return APIError(403, "Cross-site request refused: this server's pages may write here, other sites may "
                        "not.", code="cross_site_request")
    length = headers.get("content-length")
    has_body = (length is not None and length != "0") or "transfer-encoding" in headers
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and content_type not in _WRITE_TYPES:
        return APIError(415, "Send the body as application/json.", code="unsupported_media_type")
    return None
