"""Remote backends: any OpenAI-compatible server (vLLM, Ollama, OpenAI, another aigc) as a model name.

`--remote NAME=URL[,key=ENV_VAR][,model=REMOTE_MODEL]` registers NAME; requests for it are
forwarded to URL (the API base, e.g. `http://host:8000/v1`; a bare `http://host:8000` gets `/v1`)
with the key read from ENV_VAR by the CLI, asking the remote for REMOTE_MODEL. Without `model=`,
the server asks the upstream's /v1/models at start-up: one model -> NAME maps to it; several ->
`NAME/<upstream id>` for each, and NAME for the first. An upstream that cannot be asked keeps NAME
as the model name sent (a warning is logged).
Clients see the same API as for a local model: the `model` field says NAME, errors keep the
OpenAI shape (a remote that cannot be reached is a 503, a timeout 504, garbage or a refused key
502; the remote's own 4xx answers pass through), streams are
relayed chunk by chunk, and the request is logged and counted like a local one. Streams ask the
remote for usage so token counts are exact; the usage chunk reaches the client only if it asked.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from aigc.server.errors import APIError
from aigc.server.request_log import RequestRecord
from aigc.server.sse import EventStreamResponse, sse_data, unless_disconnected

log = logging.getLogger("aigc.server")


@dataclass(frozen=True)
class RemoteSpec:
    name: str
    url: str
    api_key: str | None = None
    model: str | None = None  # the remote's name for the model; default: `name`


def parse_remote_spec(spec: str, environ: Mapping[str, str]) -> RemoteSpec:
    """Parse `NAME=URL[,key=ENV_VAR][,model=REMOTE_MODEL]`; the key's value is looked up in `environ`."""
    name, sep, rest = spec.partition("=")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        raise ValueError(f"--remote {spec!r}: expected NAME=URL[,key=ENV_VAR][,model=REMOTE_MODEL]")
    url, *options = [part.strip() for part in rest.split(",")]
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--remote {spec!r}: the URL must start with http:// or https://, got {url!r}")
    api_key = model = None
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not value:
            raise ValueError(f"--remote {spec!r}: option {option!r} is not key=VALUE")
        if key == "key":
            if value not in environ:
                raise ValueError(f"--remote {name}: environment variable {value} (named by key=) is not set")
            api_key = environ[value]
        elif key == "model":
            model = value
        else:
            raise ValueError(f"--remote {spec!r}: unknown option {key!r} (known: key, model)")
    return RemoteSpec(name, url, api_key, model)


def resolve_remote(spec: RemoteSpec, timeout: float = 10.0) -> list[RemoteBackend]:
    """Backends for a remote given without `model=`: one per model its /v1/models lists."""
    base = _api_base(spec.url)
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    try:
        r = httpx.get(base + "/models", headers=headers, timeout=timeout, trust_env=False)
        r.raise_for_status()
        ids = [m["id"] for m in r.json().get("data", []) if isinstance(m, dict) and isinstance(m.get("id"), str)]
    except (httpx.HTTPError, ValueError, AttributeError, TypeError) as e:
        log.warning("remote %s: could not list the models of %s (%s); requests ask it for %r", spec.name, base,
                    e, spec.name)
        return [RemoteBackend(spec)]
    if not ids:
        log.warning("remote %s: %s lists no models; requests ask it for %r", spec.name, base, spec.name)
        return [RemoteBackend(spec)]
    backends = [RemoteBackend(RemoteSpec(spec.name, spec.url, spec.api_key, ids[0]))]
    if len(ids) > 1:
        backends += [RemoteBackend(RemoteSpec(f"{spec.name}/{i}", spec.url, spec.api_key, i)) for i in ids]
    return backends


def _api_base(url: str) -> str:
    url = url.rstrip("/")
    path = httpx.URL(url).path
    return url if path not in ("", "/") else url + "/v1"


class RemoteBackend:
    def __init__(self, spec: RemoteSpec, *, connect_timeout: float = 10.0, read_timeout: float = 600.0):
        self.name = spec.name
        self.remote_model = spec.model or spec.name
        self.base = _api_base(spec.url)
        # Server-level routes (/tokenize) live beside the API base, as in vLLM and aigc.
        self.root = self.base[: -len("/v1")] if self.base.endswith("/v1") else self.base
        self.created = int(time.time())
        self._headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:  # made lazily, inside the server's event loop
            # trust_env=False: the configured URL is used as given (no proxy variables read).
            self._client = httpx.AsyncClient(timeout=self._timeout, headers=self._headers, trust_env=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def url(self, path: str) -> str:
        """`path` relative to the API base ("chat/completions"), or to the server root ("/tokenize")."""
        return self.root + path if path.startswith("/") else f"{self.base}/{path}"

    def _unreachable(self, e: httpx.HTTPError) -> APIError:
        where = f"remote model `{self.name}` at {self.base}"
        if isinstance(e, httpx.TimeoutException):
            return APIError(504, f"The {where} did not answer in time.", code="remote_timeout")
        if isinstance(e, httpx.ConnectError | httpx.ConnectTimeout):
            return APIError(503, f"The {where} is unreachable: {e}.", code="remote_unavailable",
                            headers={"Retry-After": "5"})
        return APIError(502, f"The {where} failed: {type(e).__name__}: {e}.", code="remote_error")

    async def forward(self, request: Request, path: str, body: dict[str, Any], record: RequestRecord) -> Response:
        body = {**body, "model": self.remote_model}
        gauge = request.app.state.metrics.in_flight.labels(self.name)
        if not body.get("stream"):
            gauge.inc()
            try:
                upstream = await unless_disconnected(request, self._post(path, body), record)
            finally:
                gauge.dec()
            return self._relay_body(upstream, record)

        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        upstream_request = self.client.build_request("POST", self.url(path), json=body)
        try:
            upstream = await unless_disconnected(request, self.client.send(upstream_request, stream=True), record)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None
        if upstream.status_code != 200:
            await upstream.aread()
            await upstream.aclose()
            return self._relay_body(upstream, record)
        gauge.inc()

        async def close() -> None:
            gauge.dec()
            await upstream.aclose()

        return EventStreamResponse(self._relay_stream(upstream, record, wants_usage), record, on_close=close)

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self.client.post(self.url(path), json=body)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None

    def _relay_body(self, upstream: httpx.Response, record: RequestRecord) -> Response:
        if upstream.status_code in (401, 403):  # our key for the remote, not the client's key, is wrong
            raise APIError(502, f"The remote model `{self.name}` refused this server's API key "
                           f"(HTTP {upstream.status_code}); check the key=ENV_VAR of --remote {self.name}.",
                           code="remote_auth_failed")
        try:
            data = upstream.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            text = upstream.text[:200].strip()
            raise APIError(502, f"The remote model `{self.name}` answered HTTP {upstream.status_code} "
                           f"with a body that is not JSON: {text!r}", code="remote_error")
        if upstream.status_code >= 400:
            error = data.get("error")
            if not isinstance(error, dict):  # keep the status, give the body OpenAI's shape
                message = error if isinstance(error, str) else data.get("detail") or data.get("message") or str(data)
                error = APIError(upstream.status_code, f"remote: {message}").body()["error"]
            record.error = str(error.get("message"))
            headers = {k: v for k, v in upstream.headers.items() if k.lower() == "retry-after"}
            return JSONResponse({"error": error}, status_code=upstream.status_code, headers=headers)
        if "model" in data:
            data["model"] = self.name
        self._note_usage(data.get("usage"), record)
        return JSONResponse(data, status_code=upstream.status_code)

    @staticmethod
    def _note_usage(usage: Any, record: RequestRecord) -> None:
        if isinstance(usage, dict):
            record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            record.completion_tokens = int(usage.get("completion_tokens") or 0)
            details = usage.get("prompt_tokens_details") or {}
            record.cached_tokens = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0

    async def _relay_stream(self, upstream: httpx.Response, record: RequestRecord,
                            wants_usage: bool) -> AsyncIterator[bytes]:
        try:
            async for line in upstream.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event names
                payload = line[5:].strip()
                if payload == "[DONE]":
                    yield b"data: [DONE]\n\n"
                    return
                try:
                    chunk = json.loads(payload)
                except json.JSONDecodeError:
                    raise APIError(502, f"The remote model `{self.name}` sent a malformed event.",
                                   code="remote_error") from None
                if isinstance(chunk, dict):
                    if isinstance(chunk.get("error"), dict):
                        record.error = str(chunk["error"].get("message"))
                    self._observe_chunk(chunk, record)
                    if not wants_usage:
                        if chunk.get("usage") and not chunk.get("choices"):
                            continue  # the usage chunk we asked for on our own behalf
                        chunk.pop("usage", None)
                    if "model" in chunk:
                        chunk["model"] = self.name
                yield sse_data(json.dumps(chunk, ensure_ascii=False, separators=(",", ":")))
        except httpx.HTTPError as e:
            error = self._unreachable(e)
            record.error = error.message
            yield sse_data(json.dumps(error.body()))
        except APIError as error:
            record.error = error.message
            yield sse_data(json.dumps(error.body()))
        yield b"data: [DONE]\n\n"

    def _observe_chunk(self, chunk: dict[str, Any], record: RequestRecord) -> None:
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if text:  # one chunk is about one token; the usage chunk corrects the count
                record.completion_tokens += 1
                record.tokens_arrived(int(choice.get("index") or 0), 1)
        if chunk.get("usage"):
            self._note_usage(chunk["usage"], record)

