"""Server-sent events that notice a client leaving, and the same watch for plain responses.

Starlette's `StreamingResponse` (ASGI 2.4 servers) learns of a disconnect only when a write
fails, so a request still queued for a KV slot would hold it for nobody. Here a watcher task
waits on `receive()` for `http.disconnect` while the events are pumped; when it fires, the pump is
cancelled, which cancels the engine stream it waits on and frees the slot at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from aigc.server.errors import APIError
from aigc.server.request_log import RequestRecord

T = TypeVar("T")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of tokens


def sse_data(payload: str) -> bytes:
    return f"data: {payload}\n\n".encode()


async def wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class EventStreamResponse(StreamingResponse):
    """Streams `events` (already framed SSE bytes) and cancels them if the client disconnects."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], record: RequestRecord | None = None,
                 on_close: Callable[[], Awaitable[None] | None] | None = None):
        super().__init__(events, status_code=200, headers=SSE_HEADERS)
        self.events = events
        self.record = record
        self.on_close = on_close  # runs once, however the stream ends (even if it never started)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await self._stream(receive, send)
        finally:
            with contextlib.suppress(Exception):
                await self.events.aclose()  # type: ignore[attr-defined]
            if self.on_close is not None:
                result = self.on_close()
                if inspect.isawaitable(result):
                    await result

    async def _stream(self, receive: Receive, send: Send) -> None:
        async def pump() -> None:
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        pump_task = asyncio.create_task(pump())
        watch_task = asyncio.create_task(wait_for_disconnect(receive))
        try:
            await asyncio.wait({pump_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not pump_task.done():
                if self.record is not None:
                    self.record.disconnected = True
                pump_task.cancel()
            watch_task.cancel()
            results = await asyncio.gather(pump_task, watch_task, return_exceptions=True)
        error = results[0]
        if isinstance(error, OSError) and self.record is not None:  # the write failed: client gone
            self.record.disconnected = True
        elif isinstance(error, Exception):
            raise error


async def unless_disconnected(request: Request, work: Awaitable[T], record: RequestRecord | None = None) -> T:
    """Await `work`, cancelling it if the client disconnects first (its engine streams free their slots)."""
    work_task = asyncio.ensure_future(work)
    watch_task = asyncio.create_task(wait_for_disconnect(request.receive))
    try:
        await asyncio.wait({work_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch_task.cancel()
        if not work_task.done():
            work_task.cancel()
    if not work_task.done() or work_task.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            await work_task
        if record is not None:
            record.disconnected = True
        # Nobody reads this answer; 499 ends up in the log and metrics.
        raise APIError(499, "Client closed the request.", code="client_closed_request")
    return work_task.result()
