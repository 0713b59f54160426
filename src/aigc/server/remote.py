"""Remote backends: any OpenAI-compatible server (vLLM, Ollama, OpenAI, another aigc) as a model name.

`--remote NAME=URL[,key=ENV_VAR][,model=REMOTE_MODEL]` registers NAME; requests for it are
forwarded to URL (the API base, e.g. `http://host:8000/v1`; a bare `http://host:8000` gets `/v1`)
with the key read from ENV_VAR by the CLI, asking the remote for REMOTE_MODEL. Without `model=`,
the server asks the upstream's /v1/models at start-up: one model -> NAME maps to it; several ->
`NAME/<upstream id>` for each, and NAME for the first. An upstream that cannot be asked keeps NAME
as the model name sent (a warning is logged).
A remote is a generative backend like a local engine (generation.py): chat and completion
requests go upstream as streams (with usage, so token counts are exact), and come back as the
same `ChoiceDelta`s, which the serving layer answers as it answers a local model's -- so the
`model` field says NAME, the Responses API and the web app work on top of any remote that speaks
chat completions, and a client that disconnects closes the upstream stream. Errors keep the
OpenAI shape: a remote that cannot be reached is a 503, a timeout 504, garbage or a refused key
502; the remote's own 4xx answers pass through with their status, `param` and `code`.
Non-generative routes (/tokenize, /detokenize, /v1/embeddings) are forwarded as JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

from aigc.safety.pii import Redaction, StreamRestorer, redact
from aigc.server.errors import APIError
from aigc.server.generation import ChoiceDelta
from aigc.server.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    ModelCard,
    TokenizeRequest,
)

log = logging.getLogger("aigc.server")

# Where an upstream sends a reasoning model's thinking: vLLM (older) and DeepSeek say
# `reasoning_content`, newer vLLM and OpenRouter `reasoning`.
REASONING_KEYS = ("reasoning_content", "reasoning")


@dataclass(frozen=True)
class RemoteSpec:
    name: str
    url: str
    api_key: str | None = None
    model: str | None = None  # the remote's name for the model; default: `name`
    redact_pii: bool = False  # personal data replaced by placeholders before it leaves (--redact-pii remote)


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
    backends = [RemoteBackend(replace(spec, model=ids[0]))]
    if len(ids) > 1:
        backends += [RemoteBackend(replace(spec, name=f"{spec.name}/{i}", model=i)) for i in ids]
    return backends


def _api_base(url: str) -> str:
    url = url.rstrip("/")
    path = httpx.URL(url).path
    return url if path not in ("", "/") else url + "/v1"


class RemoteBackend:
    exact_tokens = False  # the remote's tokenizer is elsewhere; the web app estimates

    def __init__(self, spec: RemoteSpec, *, connect_timeout: float = 10.0, read_timeout: float = 600.0):
        self.name = spec.name
        self.remote_model = spec.model or spec.name
        self.base = _api_base(spec.url)
        # Server-level routes (/tokenize) live beside the API base, as in vLLM and aigc.
        self.root = self.base[: -len("/v1")] if self.base.endswith("/v1") else self.base
        self.created = int(time.time())
        self.max_context: int | None = None
        self.redact_pii = spec.redact_pii
        self._headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._client: httpx.AsyncClient | None = None

    def card(self) -> ModelCard:
        return ModelCard(id=self.name, created=self.created, owned_by="remote")

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

    def close(self) -> None:
        pass  # the HTTP client closes in the event loop (aclose)

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

    # ---- generation -----------------------------------------------------------------------------

    async def chat(self, req: ChatCompletionRequest, request_id: str) -> RemoteGeneration:
        return await self._generate("chat/completions", req.model_dump(exclude_unset=True), req.n)

    async def complete(self, req: CompletionRequest, request_id: str) -> RemoteGeneration:
        prompts = 1 if isinstance(req.prompt, str) or not req.prompt or isinstance(req.prompt[0], int) \
            else len(req.prompt)
        return await self._generate("completions", req.model_dump(exclude_unset=True), prompts * req.n)

    async def _generate(self, path: str, body: dict[str, Any], choices: int) -> RemoteGeneration:
        """Open the upstream stream; its status decides, before anything streams to the client."""
        placeholders: dict[str, str] | None = None
        if self.redact_pii:
            body, placeholders = redact_request(body)
        body = {**body, "model": self.remote_model, "stream": True,
                "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        upstream_request = self.client.build_request("POST", self.url(path), json=body)
        try:
            upstream = await self.client.send(upstream_request, stream=True)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None
        if upstream.status_code != 200:
            try:
                await upstream.aread()
            except httpx.HTTPError as e:
                raise self._unreachable(e) from None
            finally:
                await upstream.aclose()
            raise self._upstream_error(upstream)
        return RemoteGeneration(self, upstream, choices, chat=path.startswith("chat"), placeholders=placeholders)

    def _upstream_error(self, upstream: httpx.Response) -> APIError:
        """The remote's error answer as ours: its status, message, param and code."""
        if upstream.status_code in (401, 403):  # our key for the remote, not the client's key, is wrong
            return APIError(502, f"The remote model `{self.name}` refused this server's API key "
                            f"(HTTP {upstream.status_code}); check the key=ENV_VAR of --remote {self.name}.",
                            code="remote_auth_failed")
        data = _json_or_none(upstream)
        if data is None:
            text = upstream.text[:200].strip()
            return APIError(502, f"The remote model `{self.name}` answered HTTP {upstream.status_code} "
                            f"with a body that is not JSON: {text!r}", code="remote_error")
        status = upstream.status_code if upstream.status_code >= 400 else 502
        headers = {k: v for k, v in upstream.headers.items() if k.lower() == "retry-after"}
        return _error_of(data, status, headers)

    # ---- non-generative routes ------------------------------------------------------------------

    async def embeddings(self, req: EmbeddingRequest) -> dict[str, Any]:
        return await self._post_json("embeddings", req.model_dump(exclude_unset=True))

    async def tokenize(self, req: TokenizeRequest) -> dict[str, Any]:
        return await self._post_json("/tokenize", req.model_dump(exclude_unset=True))

    async def detokenize(self, req: DetokenizeRequest) -> dict[str, Any]:
        return await self._post_json("/detokenize", req.model_dump(exclude_unset=True))

    async def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Forward a JSON request and return the remote's answer (its model name replaced by ours)."""
        try:
            upstream = await self.client.post(self.url(path), json={**body, "model": self.remote_model})
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None
        if upstream.status_code != 200:
            raise self._upstream_error(upstream)
        data = _json_or_none(upstream)
        if data is None:
            raise APIError(502, f"The remote model `{self.name}` answered with a body that is not JSON.",
                           code="remote_error")
        if "model" in data:
            data["model"] = self.name
        return data


def _json_or_none(upstream: httpx.Response) -> dict[str, Any] | None:
    try:
        data = upstream.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _error_of(data: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> APIError:
    error = data.get("error")
    if isinstance(error, dict):
        return APIError(status, f"{error.get('message') or 'remote error'}", param=error.get("param"),
                        code=error.get("code"), type=error.get("type"), headers=headers)
    message = error if isinstance(error, str) else data.get("detail") or data.get("message") or str(data)
    return APIError(status, f"remote: {message}", headers=headers)


_BUFFERED = 8  # deltas read ahead of the client: a client gone early leaves the upstream little done
# What ChoiceDelta carries itself; the rest of a delta passes through as `extra`.
_DELTA_KEYS = {"role", "content", "tool_calls", "function_call", *REASONING_KEYS}


def redact_request(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The request with personal data in its messages (or prompts) replaced by placeholders, and
    the placeholders (one numbering for the whole request, so a value repeated across turns keeps
    its name)."""
    mapping: dict[str, str] = {}

    def clean(text: str) -> str:
        nonlocal mapping
        r: Redaction = redact(text, placeholders=mapping)
        mapping = r.placeholders
        return r.text

    body = dict(body)
    if isinstance(body.get("messages"), list):
        messages = []
        for m in body["messages"]:
            m = dict(m)
            if isinstance(m.get("content"), str):
                m["content"] = clean(m["content"])
            elif isinstance(m.get("content"), list):
                m["content"] = [{**part, "text": clean(part["text"])} if isinstance(part, dict)
                                and isinstance(part.get("text"), str) else part for part in m["content"]]
            messages.append(m)
        body["messages"] = messages
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        body["prompt"] = clean(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        body["prompt"] = [clean(p) for p in prompt]
    return body, mapping


class RemoteGeneration:
    """The upstream's event stream as ChoiceDeltas. A reader task fills a small queue, so `cancel()`
    (a stop button, a client gone) closes the upstream connection at once, whoever is waiting."""

    def __init__(self, backend: RemoteBackend, upstream: httpx.Response, choices: int, *, chat: bool,
                 placeholders: dict[str, str] | None = None):
        self.choices = choices
        self._placeholders = placeholders
        self._restorers: dict[tuple[int, str], StreamRestorer] = {}  # (choice, "text" | "reasoning")
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self._backend = backend
        self._upstream = upstream
        self._chat = chat
        self._usage_seen = False
        self._error: APIError | None = None
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=_BUFFERED)
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for line in self._upstream.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event names
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    chunk = json.loads(payload)
                except json.JSONDecodeError:
                    raise APIError(502, f"The remote model `{self._backend.name}` sent a malformed event.",
                                   code="remote_error") from None
                if isinstance(chunk, dict):
                    for delta in self._deltas(chunk):
                        await self._queue.put(delta)  # bounded: the upstream goes no faster than we read
        except httpx.HTTPError as e:
            self._error = self._backend._unreachable(e)
        except APIError as e:
            self._error = e
        except Exception as e:  # anything else the upstream makes us trip on is its fault
            self._error = APIError(502, f"The remote model `{self._backend.name}` sent an event this server "
                                   f"cannot read: {type(e).__name__}: {e}", code="remote_error")
        finally:
            await self._upstream.aclose()

    def _deltas(self, chunk: dict[str, Any]) -> list[ChoiceDelta]:
        if isinstance(chunk.get("error"), dict):
            raise _error_of(chunk, 502)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage_seen = True
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)
            details = usage.get("prompt_tokens_details") or {}
            self.cached_tokens = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        out = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = int(choice.get("index") or 0)
            logprobs = choice.get("logprobs")
            reasoning = ""
            if self._chat:
                delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                text = delta.get("content") or ""
                reasoning = next((v for k in REASONING_KEYS if isinstance(v := delta.get(k), str) and v), "")
                calls = delta.get("tool_calls") or None
                extra = {k: v for k, v in delta.items() if k not in _DELTA_KEYS and v is not None} or None
                logprobs = logprobs.get("content") if isinstance(logprobs, dict) else None
            else:
                text, calls, extra = choice.get("text") or "", None, None
            finish = choice.get("finish_reason")
            if self._placeholders:  # the user sees their own data where the reply names a placeholder
                # the reasoning's held tail goes out once the answer starts (or at the end)
                reasoning = self._restore(index, "reasoning", reasoning, bool(text or calls or finish))
                text = self._restore(index, "text", text, bool(finish))
            if not (text or reasoning or calls or extra or logprobs or finish):
                continue  # the role chunk and keep-alives
            # About one token a chunk with output; the usage chunk at the end makes it exact.
            tokens = 1 if text or reasoning or calls else 0
            if not self._usage_seen:
                self.completion_tokens += tokens
            out.append(ChoiceDelta(index, text, calls, logprobs or None, finish, choice.get("stop_reason"),
                                   extra, tokens, reasoning=reasoning, reasoning_tokens=tokens if reasoning else 0))
        return out

    def _restore(self, index: int, part: str, text: str, flush: bool) -> str:
        restorer = self._restorers.setdefault((index, part), StreamRestorer(self._placeholders or {}))
        return restorer.feed(text) + (restorer.flush() if flush else "")

    async def __aiter__(self) -> AsyncIterator[ChoiceDelta]:
        while True:
            if self._queue.empty():
                if self._task.done():  # read to the end, failed, or cancelled
                    if self._error is not None:
                        raise self._error
                    return
                getter = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({getter, self._task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                item = getter.result()
            else:
                item = self._queue.get_nowait()
            yield item

    def cancel(self) -> None:
        if not self._task.done():
            self._task.cancel()
