"""Read several engine streams (one per prompt of a batched /v1/completions call) as one.

Deltas come out in arrival order, tagged with the index of the stream they came from. Leaving
early (an error, the client gone) cancels every stream, so no KV slot is left working for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from aigc.engine.protocol import CompletionDelta, RequestStream

_DONE = object()


async def merge_streams(streams: Sequence[RequestStream]) -> AsyncIterator[tuple[int, CompletionDelta]]:
    if len(streams) == 1:  # the common case: no tasks needed
        stream = streams[0]
        try:
            async for delta in stream:
                yield 0, delta
        finally:
            stream.cancel()  # no-op after a normal end
        return

    queue: asyncio.Queue = asyncio.Queue()

    async def read(i: int, stream: RequestStream) -> None:
        try:
            async for delta in stream:
                queue.put_nowait((i, delta))
            queue.put_nowait((i, _DONE))
        except Exception as e:  # handed to the consumer, which raises it
            queue.put_nowait((i, e))

    tasks = [asyncio.create_task(read(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            i, item = await queue.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield i, item
    finally:
        for stream in streams:
            stream.cancel()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
