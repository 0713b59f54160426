"""EngineStream: one request's deltas, handed from the engine's worker thread to its consumer.

A stream made inside a running asyncio loop is an async iterator: the worker schedules
`put_nowait` on the caller's loop with `call_soon_threadsafe`, so the loop never blocks on the
model. A stream made outside any loop (a CLI, a test thread) is a plain blocking iterator.
Leaving early (`cancel()`, `aclose()`, or the consuming task being cancelled while it waits) tells
the engine to free the request's slots at its next step.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable, Iterable

from aigc.engine.protocol import CompletionDelta, RequestMetrics

_END = object()  # the stream's last item


class EngineStream:
    """Implements `protocol.RequestStream`. Extra: `finish_reasons` per choice once finished."""

    def __init__(self, request_id: str, n: int, on_cancel: Callable[[str], None]):
        self.request_id = request_id
        self.metrics = RequestMetrics()
        self.finish_reasons: list[str | None] = [None] * n
        self._on_cancel = on_cancel
        self.cancelled = False
        self._done = False  # the consumer has seen the end
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._async_q: asyncio.Queue | None = asyncio.Queue() if self._loop else None
        self._sync_q: queue.SimpleQueue | None = None if self._loop else queue.SimpleQueue()

    # ---- worker side ------------------------------------------------------------------------------

    def deliver(self, items: Iterable[CompletionDelta | BaseException], end: bool = False) -> bool:
        """Queue deltas (and an error, or the end) for the consumer; False if its loop is gone."""
        batch = list(items) + ([_END] if end else [])
        if not batch:
            return True
        if self._loop is None:
            for item in batch:
                self._sync_q.put(item)
            return True
        try:
            self._loop.call_soon_threadsafe(self._put_all, batch)
        except RuntimeError:  # the consumer's loop is closed: nobody will read this stream
            return False
        return True

    def _put_all(self, batch: list) -> None:
        for item in batch:
            self._async_q.put_nowait(item)

    # ---- consumer side ----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop generating; the engine frees the slots and ends the stream with finish_reason "abort"."""
        if not self.cancelled and not self._done:
            self.cancelled = True
            self._on_cancel(self.request_id)

    def __aiter__(self) -> EngineStream:
        if self._async_q is None:
            raise TypeError("this stream was created outside an event loop: iterate it with `for`")
        return self

    async def __anext__(self) -> CompletionDelta:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._async_q.get()
        except asyncio.CancelledError:  # the consuming task was cancelled (client gone, timeout)
            self.cancel()
            raise
        return self._unwrap(item, StopAsyncIteration)

    async def aclose(self) -> None:
        self.cancel()
        self._done = True

    def __iter__(self) -> EngineStream:
        if self._sync_q is None:
            raise TypeError("this stream belongs to an event loop: iterate it with `async for`")
        return self

    def __next__(self) -> CompletionDelta:
        if self._done:
            raise StopIteration
        return self._unwrap(self._sync_q.get(), StopIteration)

    def _unwrap(self, item, stop: type[Exception]) -> CompletionDelta:
        if item is _END:
            self._done = True
            raise stop
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item
