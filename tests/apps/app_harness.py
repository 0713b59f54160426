"""Servers for the web app's API tests: a scripted engine (deterministic, as slow as a test needs)
behind the real server stack, and a temporary SQLite database per server.

The scripted engine answers every request with the same words, one token per `delay` seconds, so
stop and disconnect tests can act mid-reply without racing a real model. With `once` it says its
words one time and stops (a reply of exactly that text).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

import httpx  # noqa: E402
from server_harness import ServerThread, byte_tokenizer  # noqa: E402

from aigc.engine.protocol import CompletionDelta, EngineRequest, EngineStats, QueueFullError, RequestMetrics  # noqa: E402
from aigc.server.app import create_app  # noqa: E402
from aigc.server.backends import ModelBackends  # noqa: E402
from aigc.server.local_backend import LocalBackend  # noqa: E402
from aigc.settings import Settings  # noqa: E402

SCRIPTED = "scripted"
REPLY_WORDS = [f"word{i} " for i in range(1000)]


class ScriptedStream:
    def __init__(self, request: EngineRequest, delay: float, words: list[str], once: bool = False):
        self.request_id = request.request_id
        self.metrics = RequestMetrics(prompt_tokens=len(request.prompt_token_ids))
        self.max_tokens = request.params.max_tokens or 16
        self.delay = delay
        self.words = words
        self.once = once
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    async def __aiter__(self) -> AsyncIterator[CompletionDelta]:
        ends = self.once and len(self.words) <= self.max_tokens  # said in full: a stop, not the length limit
        count = len(self.words) if ends else self.max_tokens
        for i in range(count):
            if self.cancelled:
                yield CompletionDelta(0, "", [], finish_reason="abort")
                return
            await asyncio.sleep(self.delay)
            finish = ("stop" if ends else "length") if i == count - 1 else None
            yield CompletionDelta(0, self.words[i % len(self.words)], [i], finish_reason=finish)


class ScriptedEngine:
    def __init__(self, delay: float = 0.0, words: list[str] | None = None, *, once: bool = False):
        self.delay = delay
        self.words = words or REPLY_WORDS
        self.once = once
        self.requests: list[EngineRequest] = []
        self.streams: list[ScriptedStream] = []
        self.busy = False  # True: every submit is refused with a 429

    def submit(self, request: EngineRequest) -> ScriptedStream:
        if self.busy:
            raise QueueFullError("busy", retry_after=1.0)
        self.requests.append(request)
        stream = ScriptedStream(request, self.delay, self.words, self.once)
        self.streams.append(stream)
        return stream

    def stats(self) -> EngineStats:
        return EngineStats(0, 0, 0, 1, 0, 1)

    def stop(self) -> None:
        pass


def scripted_server(db_path: Path | str, *, delay: float = 0.0, window: int = 2048, extra: list | None = None,
                    **settings) -> tuple[ServerThread, ScriptedEngine]:
    engine = ScriptedEngine(delay)
    backends = ModelBackends([LocalBackend(SCRIPTED, engine, byte_tokenizer(), max_context=window), *(extra or [])])
    url = db_path if isinstance(db_path, str) and "://" in db_path else f"sqlite:///{db_path}"
    app = create_app(Settings(models=[], database_url=url, **settings), backends)
    return ServerThread(app).start(), engine


def events_of(r: httpx.Response) -> list[dict]:
    """The JSON events of a finished SSE response."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]


def error_of(r: httpx.Response, status: int, code: str | None = None) -> dict:
    """Check an error response: the status and the server's error shape; returns the error object."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"])
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]
