"""Engine: the engine core (core.py) on a worker thread, for servers. Callers `submit` requests from
any thread or event loop; the worker owns the model and the KV cache and runs `EngineCore.step()`
while there is work, moving new requests and cancellations in between steps.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import torch

from aigc.engine import embeddings
from aigc.engine.core import EngineCore, FinishHook, slots_wanted
from aigc.engine.protocol import (
    CompletionDelta,
    EngineNotReadyError,
    EngineRequest,
    EngineStats,
    QueueFullError,
)
from aigc.engine.stream import EngineStream
from aigc.generation import guided
from aigc.generation.params import InvalidParameterError
from aigc.generation.prefill import ContextLengthError

if TYPE_CHECKING:
    from aigc.models.transformer import Transformer
    from aigc.tokenizer import Tokenizer

log = logging.getLogger(__name__)

__all__ = ["Engine", "FinishHook"]


class Engine:
    """Continuous-batching generation for one model.

    max_concurrency: KV slots = sequences decoded together (a request with n choices takes n).
    max_queue: requests allowed to wait for a slot before `submit` raises `QueueFullError` (a request
        with n choices counts n: admission is by slots).
    max_context: tokens per slot (prompt + completion), capped at the model's window.
    prefill_chunk: prompt tokens per step, so a long prompt does not stall running streams.
    request_timeout_s: requests running longer end with finish_reason "abort" (None: no limit).
    on_finish: called on the worker thread when a request ends; keep it quick.
    """

    def __init__(self, model: Transformer, tokenizer: Tokenizer, name: str, *, max_concurrency: int = 16,
                 max_queue: int = 64, max_context: int = 4096, prefill_chunk: int = 256,
                 request_timeout_s: float | None = None, on_finish: FinishHook | None = None):
        if max_concurrency < 1 or max_queue < 0 or prefill_chunk < 1 or max_context < 2:
            raise ValueError("max_concurrency, prefill_chunk must be >= 1, max_queue >= 0, max_context >= 2")
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_concurrency, self.max_queue, self.prefill_chunk = max_concurrency, max_queue, prefill_chunk
        self.max_context = min(max_context, model.config.context_length)
        self.request_timeout_s = request_timeout_s
        self.on_finish = on_finish
        self._cond = threading.Condition()
        self._inbox: deque[tuple[EngineRequest, EngineStream, float]] = deque()
        self._cancels: set[str] = set()
        self._thread: threading.Thread | None = None
        self._ready = False
        self._stopping = False
        self._start_error: BaseException | None = None
        self._stats = EngineStats(0, 0, 0, max_concurrency, 0, max_concurrency * self.max_context)
        self._in_flight = 0  # slots wanted by unfinished requests (n each; num_beams for beam search)
        self._core: EngineCore | None = None  # made on the worker thread by start()

    # ---- life cycle -------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready

    def start(self) -> None:
        """Allocate the KV cache and start the worker thread (returns when it is ready)."""
        if self._thread is not None:
            return
        started = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, args=(started,), name=f"engine-{self.name}", daemon=True)
        self._thread.start()
        started.wait()
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise self._start_error

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the worker; requests still in flight end with finish_reason "abort"."""
        with self._cond:
            self._ready = False
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ---- caller side ------------------------------------------------------------------------------

    def submit(self, request: EngineRequest) -> EngineStream:
        """Queue a request; iterate the returned stream for its deltas.

        Raises EngineNotReadyError (not started / stopped), InvalidParameterError (bad params or token
        ids), ContextLengthError (prompt + 1 token does not fit) or QueueFullError (try again later).
        """
        if not self._ready:
            raise EngineNotReadyError(f"model {self.name!r} is not ready")
        params = request.params.validate(self.model.config.vocab_size)
        ids, vocab = request.prompt_token_ids, self.model.config.vocab_size
        if not ids:
            raise InvalidParameterError("prompt is empty; give at least one token")
        if min(ids) < 0 or max(ids) >= vocab:
            raise InvalidParameterError(f"prompt has a token id outside the vocabulary (size {vocab})")
        if len(ids) + 1 > self.max_context:
            raise ContextLengthError(f"prompt has {len(ids)} tokens but the context window is {self.max_context} "
                                     "(including at least one generated token)")
        if params.guided is not None:  # a schema that does not compile is the caller's error, now
            guided.check(params.guided, self.tokenizer, vocab)
        if slots_wanted(params) > self.max_concurrency:
            what = "num_beams" if params.use_beam_search else "n"
            raise InvalidParameterError(f"{what} must be <= {self.max_concurrency} on this server, "
                                        f"got {slots_wanted(params)}")
        with self._cond:
            if not self._ready:
                raise EngineNotReadyError(f"model {self.name!r} is not ready")
            n = slots_wanted(params)
            if self._in_flight + n > self.max_concurrency + self.max_queue:
                raise QueueFullError(f"model {self.name!r} is busy: {self.max_queue} requests already wait",
                                     retry_after=1.0)
            self._in_flight += n
            stream = EngineStream(request.request_id, params.n, self._cancel)
            self._inbox.append((request, stream, time.monotonic()))
            self._cond.notify()
        return stream

    def embed(self, inputs: list[list[int]], dimensions: int | None = None) -> list:
        """Embedding vectors (float32 numpy arrays) of token-id inputs; see engine/embeddings.py.
        Blocking: call it from a worker thread, not an event loop."""
        if not self._ready:
            raise EngineNotReadyError(f"model {self.name!r} is not ready")
        return embeddings.embed(self.model, inputs, dimensions)

    @property
    def embedding_size(self) -> int:
        return self.model.config.hidden_size

    def stats(self) -> EngineStats:
        with self._cond:
            return dataclasses.replace(self._stats, queued=self._stats.queued + len(self._inbox))

    def _cancel(self, request_id: str) -> None:
        with self._cond:
            self._cancels.add(request_id)
            self._cond.notify()

    # ---- worker -----------------------------------------------------------------------------------

    def _run(self, started: threading.Event) -> None:
        try:
            with torch.inference_mode():
                self._core = EngineCore(self.model, self.tokenizer, max_concurrency=self.max_concurrency,
                                        max_context=self.max_context, prefill_chunk=self.prefill_chunk,
                                        on_finish=self.on_finish, on_close=self._closed)
        except BaseException as e:  # e.g. out of memory for the cache: report it to start()
            self._start_error = e
            started.set()
            return
        with self._cond:
            self._ready = True
        started.set()
        core = self._core
        with torch.inference_mode():
            while self._next_batch_of_work():
                core.step()
                self._publish_stats()
            core.close()
            self._abort_inbox()

    def _next_batch_of_work(self) -> bool:
        """Wait for work; move new requests and cancellations in. False when the engine stops."""
        core = self._core
        with self._cond:
            while not (self._stopping or self._inbox or self._cancels or core.has_work):
                self._cond.wait()
            if self._stopping:
                return False
            new, cancels = list(self._inbox), self._cancels
            self._inbox.clear()
            self._cancels = set()
        for request, stream, submitted in new:
            core.add_request(request, stream, submitted)
        for rid in cancels:
            core.abort(rid, "abort")
        if self.request_timeout_s is not None:
            core.abort_older_than(self.request_timeout_s)
        return True

    def _closed(self, request: EngineRequest) -> None:
        with self._cond:
            self._in_flight -= slots_wanted(request.params)
        self._publish_stats()  # so whoever sees the end also sees the freed slots in stats()

    def _abort_inbox(self) -> None:
        with self._cond:
            left = list(self._inbox)
            self._inbox.clear()
        for request, stream, _ in left:
            stream.finish_reasons = ["abort"] * len(stream.finish_reasons)
            deltas = [CompletionDelta(i, "", [], None, "abort") for i in range(len(stream.finish_reasons))]
            self._closed(request)
            stream.deliver(deltas, end=True)
        self._publish_stats()

    def _publish_stats(self) -> None:
        if self._core is None:
            return
        s = self._core.stats()
        with self._cond:
            self._stats = s

    # Counters for exporters (the core's; read without locking, they only grow).
    def _counter(self, name: str) -> int:
        return getattr(self._core, name) if self._core is not None else 0

    requests_finished = property(lambda self: self._counter("requests_finished"))
    tokens_generated = property(lambda self: self._counter("tokens_generated"))
    prompt_tokens_processed = property(lambda self: self._counter("prompt_tokens_processed"))
    prompt_tokens_cached = property(lambda self: self._counter("prompt_tokens_cached"))
