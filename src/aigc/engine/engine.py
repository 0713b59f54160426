"""Engine: the serving loop. Callers `submit` requests from any thread or event loop; one worker thread
owns the model and the KV cache and runs steps (see `scheduler.py`) while there is work.

Per step the worker: takes new requests and cancellations from the inbox, admits the next waiting
request (reusing a cached prefix), runs one batched decode forward for all running choices and at
most one prefill chunk, samples, turns tokens into text deltas and hands them to each request's
stream. Beam-search requests do not batch (all beams of one prompt move together, with their own
small cache): the worker runs each as one job between steps, and streams its text as one delta.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from aigc.engine.kv_slots import SlotTable
from aigc.engine.model_runner import ModelRunner
from aigc.engine.protocol import (
    CompletionDelta,
    EngineNotReadyError,
    EngineRequest,
    EngineStats,
    QueueFullError,
    RequestMetrics,
)
from aigc.engine.request_state import RequestState
from aigc.engine.scheduler import Scheduler
from aigc.engine.stream import EngineStream
from aigc.generation.beam_search import beam_search
from aigc.generation.params import InvalidParameterError
from aigc.generation.prefill import ContextLengthError

if TYPE_CHECKING:
    from aigc.models.transformer import Transformer
    from aigc.tokenizer import Tokenizer

log = logging.getLogger(__name__)

FinishHook = Callable[[str, RequestMetrics, list], None]  # (request_id, metrics, finish_reasons)


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
        self.max_context = min(max_context, model.config.max_position_embeddings)
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
        self._in_flight = 0  # slots wanted by unfinished requests (n each; 1 for beam search)
        # Counters for exporters (read without locking; they only grow).
        self.requests_finished = 0
        self.tokens_generated = 0
        self.prompt_tokens_processed = 0
        self.prompt_tokens_cached = 0

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
        if not params.use_beam_search and params.n > self.max_concurrency:
            raise InvalidParameterError(f"n must be <= {self.max_concurrency} on this server, got {params.n}")
        with self._cond:
            if not self._ready:
                raise EngineNotReadyError(f"model {self.name!r} is not ready")
            n = _slots_wanted(params)
            if self._in_flight + n > self.max_concurrency + self.max_queue:
                raise QueueFullError(f"model {self.name!r} is busy: {self.max_queue} requests already wait",
                                     retry_after=1.0)
            self._in_flight += n
            stream = EngineStream(request.request_id, n, self._cancel)
            self._inbox.append((request, stream, time.monotonic()))
            self._cond.notify()
        return stream

    def stats(self) -> EngineStats:
        with self._cond:
            s = self._stats
            return EngineStats(s.running, s.queued + len(self._inbox), s.kv_slots_used, s.kv_slots_total,
                               s.kv_tokens_used, s.kv_tokens_total)

    def _cancel(self, request_id: str) -> None:
        with self._cond:
            self._cancels.add(request_id)
            self._cond.notify()

    # ---- worker -----------------------------------------------------------------------------------

    def _run(self, started: threading.Event) -> None:
        try:
            with torch.inference_mode():
                self._runner = ModelRunner(self.model, self.max_concurrency, self.max_context)
        except BaseException as e:  # e.g. out of memory for the cache: report it to start()
            self._start_error = e
            started.set()
            return
        self._table = SlotTable(self.max_concurrency)
        self._sched = Scheduler(self._table, self.prefill_chunk)
        self._beams: deque[RequestState] = deque()
        with self._cond:
            self._ready = True
        started.set()
        with torch.inference_mode():
            while self._next_batch_of_work():
                try:
                    self._step()
                except Exception as e:  # a bug must not leave every stream waiting forever
                    self._fail(self._sched.running_requests(), e)
                self._publish_stats()
            self._abort_all()
        if self._runner.torch_threads_before is not None:
            torch.set_num_threads(self._runner.torch_threads_before)

    def _next_batch_of_work(self) -> bool:
        """Wait for work; move new requests and cancellations in. False when the engine stops."""
        with self._cond:
            while not (self._stopping or self._inbox or self._cancels or self._beams or not self._sched.idle):
                self._cond.wait()
            if self._stopping:
                return False
            new, cancels = list(self._inbox), self._cancels
            self._inbox.clear()
            self._cancels = set()
        for request, stream, submitted in new:
            try:
                req = RequestState(request, stream, self.tokenizer, vocab_size=self.model.config.vocab_size,
                                   device=self.model.device, max_len=self.max_context, submitted_at=submitted)
            except Exception as e:
                self._close(request, stream, [e])
                continue
            if stream.cancelled:
                self._finish(req, [], "abort")
            elif req.params.use_beam_search:
                self._beams.append(req)
            else:
                self._sched.add(req)
        for rid in cancels:
            self._abort(rid, "abort")
        if self.request_timeout_s is not None:
            now = time.monotonic()
            for req in [*self._sched.waiting, *self._sched.running_requests()]:
                if now - req.submitted_at > self.request_timeout_s:
                    self._abort(req.request_id, "abort")
        return True

    def _step(self) -> None:
        if self._beams:  # one beam-search job between two batched steps
            self._run_beam_search(self._beams.popleft())
        sched, runner = self._sched, self._runner
        out: dict[int, tuple[RequestState, list[CompletionDelta]]] = {}
        try:
            runner.copy(sched.admit())
            if sched.prefilling is not None and sched.prefilling.admitted_at is None:
                sched.prefilling.admitted_at = time.monotonic()
            batch = sched.decode_batch()
            chunk = sched.prefill_chunk_to_run()
            decoded, sampled = runner.step(batch, chunk)
        except Exception as e:  # the cache rows of everyone in the step are suspect now
            return self._fail(sched.running_requests(), e)
        if batch is not None:
            sched.decoded(batch)
            ids, infos = decoded
            reqs = [sched.decoding[c.slot][0] for c in batch.choices]
            for req, choice, tok, info in zip(reqs, batch.choices, ids, infos, strict=True):
                out.setdefault(id(req), (req, []))[1].append(req.accept(choice, tok, info))
                if choice.finished:
                    sched.finish_choice(choice)

        if chunk is not None:
            req = chunk.request
            runner.copy(sched.prefilled(chunk))  # forks the prompt to the other choices after the last chunk
            self.prompt_tokens_processed += len(chunk.token_ids)
            if sampled is not None:
                self.prompt_tokens_cached += req.stream.metrics.cached_prompt_tokens
                deltas = [req.accept(c, t, i) for c, t, i in zip(req.choices, *sampled, strict=True)]
                out[id(req)] = (req, deltas)
                sched.start_decoding(req)

        for req, deltas in out.values():
            self.tokens_generated += len(deltas)
            if req.finished:
                self._finish(req, deltas)
            elif not req.stream.deliver(deltas):
                self._abort(req.request_id, "abort")  # its event loop is gone

    # ---- ending requests --------------------------------------------------------------------------

    def _finish(self, req: RequestState, deltas: list[CompletionDelta], reason: str | None = None) -> None:
        """End a request: end its unfinished choices with `reason`, close its stream, free its slots."""
        if reason is not None:
            for c in req.choices:
                if not c.finished:
                    deltas.append(CompletionDelta(c.index, c.end(reason), [], None, reason))
        self._sched.remove(req)
        m = req.stream.metrics
        m.queued_s = ((req.admitted_at or time.monotonic()) - req.submitted_at)
        m.total_s = time.monotonic() - req.submitted_at
        reasons = [c.finish_reason for c in req.choices] or req.stream.finish_reasons
        req.stream.finish_reasons = reasons
        self.requests_finished += 1
        if self.on_finish is not None:  # before the stream ends, so its consumer sees the hook's effects
            try:
                self.on_finish(req.request_id, m, reasons)
            except Exception:
                log.exception("on_finish hook failed")
        self._close(req.request, req.stream, deltas)

    def _abort(self, request_id: str, reason: str) -> None:
        req = self._sched.find(request_id) or next((r for r in self._beams if r.request_id == request_id), None)
        if req is None:
            return  # already finished
        if req in self._beams:
            self._beams.remove(req)
            req.stream.finish_reasons = [reason]
        self._finish(req, [], reason)

    def _abort_all(self) -> None:
        for req in [*self._sched.waiting, *self._sched.running_requests(), *self._beams]:
            self._abort(req.request_id, "abort")
        with self._cond:
            left = list(self._inbox)
            self._inbox.clear()
        for request, stream, _ in left:
            stream.finish_reasons = ["abort"] * len(stream.finish_reasons)
            deltas = [CompletionDelta(i, "", [], None, "abort") for i in range(len(stream.finish_reasons))]
            self._close(request, stream, deltas)
        self._publish_stats()

    def _close(self, request: EngineRequest, stream: EngineStream, items: list) -> None:
        """The one way a stream ends: its last items, then the end; its slots leave the admission count."""
        with self._cond:
            self._in_flight -= _slots_wanted(request.params)
        self._publish_stats()  # so whoever sees the end also sees the freed slots in stats()
        stream.deliver(items, end=True)

    def _fail(self, reqs: list[RequestState], error: Exception) -> None:
        """A forward failed: the requests in it get the error; their slots are forgotten."""
        log.exception("engine step failed", exc_info=error)
        for req in reqs:
            self._sched.remove(req)
            self._sched.drop_contents(req)
            self._close(req.request, req.stream, [error])

    def _publish_stats(self) -> None:
        table, sched = self._table, self._sched
        running = len(sched.running_requests())
        used = len(table) - table.num_free()
        with self._cond:
            self._stats = EngineStats(running, len(sched.waiting) + len(self._beams), used, len(table),
                                      table.used_tokens(), len(table) * self.max_context)

    # ---- beam search ------------------------------------------------------------------------------

    def _run_beam_search(self, req: RequestState) -> None:
        req.admitted_at = time.monotonic()
        stop_ids = sorted(req.stop_ids)
        try:
            hyps = beam_search(self.model, req.prompt, req.params, stop_token_ids=stop_ids,
                               max_new_tokens=req.max_new, prefill_chunk=self.prefill_chunk)
        except Exception as e:
            log.exception("beam search failed")
            self._close(req.request, req.stream, [e])
            return
        m, deltas, reasons = req.stream.metrics, [], []
        for i, h in enumerate(hyps):
            body = h.token_ids[:-1] if h.ended_by_stop_token else h.token_ids
            reason = "stop" if h.ended_by_stop_token else "length"
            stop_reason = h.token_ids[-1] if h.ended_by_stop_token else None
            text = self.tokenizer.decode(body, skip_special_tokens=True)
            deltas.append(CompletionDelta(i, text, list(h.token_ids), None, reason, stop_reason))
            reasons.append(reason)
            m.completion_tokens += len(h.token_ids)
        m.time_to_first_token_s = time.monotonic() - req.submitted_at
        req.stream.finish_reasons = reasons
        self.tokens_generated += m.completion_tokens
        self._finish(req, deltas)


def _slots_wanted(params) -> int:
    return 1 if params.use_beam_search else params.n
