"""EngineCore: the one decode loop. Synchronous: `add_request`, `step`, `abort`.

Everything that generates tokens drives this class: the threaded `Engine` behind `aigc serve`
calls `step()` on its worker thread; `generate()` / `stream_generate()` (offline.py) call it in a
loop for `aigc generate`, `aigc chat`, evaluation and pretraining samples. So seeds, stop handling,
beam search and speed are the same everywhere.

Each step: plan (the scheduler admits a waiting request, reusing a cached prefix, and picks the
decode rows plus at most one prefill chunk), execute (the model runner: one forward over that mixed
batch), update (sample the decode rows, or advance a beam search over its rows and reorder their
KV slots; turn tokens into text deltas; deliver them to each request's stream). A beam-search
request holds `num_beams` slots and rides in the same steps as everything else, so it never pauses
other streams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from aigc.engine.kv_slots import SlotTable
from aigc.engine.model_runner import ModelRunner
from aigc.engine.protocol import CompletionDelta, EngineRequest, EngineStats, RequestMetrics
from aigc.engine.request_state import ChoiceState, RequestState
from aigc.engine.scheduler import DecodeBatch, Scheduler
from aigc.engine.speculation import SpeculationPolicy
from aigc.engine.stream import EngineStream

if TYPE_CHECKING:
    from aigc.models.transformer import Transformer
    from aigc.tokenizer import Tokenizer

log = logging.getLogger(__name__)

FinishHook = Callable[[str, RequestMetrics, list], None]  # (request_id, metrics, finish_reasons)
CloseHook = Callable[[EngineRequest], None]


def slots_wanted(params) -> int:
    return params.num_beams if params.use_beam_search else params.n


class EngineCore:
    """One model, one KV cache of `max_concurrency` slots of up to `max_context` tokens each."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer | None, *, max_concurrency: int,
                 max_context: int, prefill_chunk: int = 256, on_finish: FinishHook | None = None,
                 on_close: CloseHook | None = None, native: bool | None = None,
                 speculation: SpeculationPolicy | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.max_concurrency, self.max_context = max_concurrency, max_context
        self.on_finish, self.on_close = on_finish, on_close
        self.runner = ModelRunner(model, max_concurrency, max_context, native=native)
        self.table = SlotTable(max_concurrency)
        self.sched = Scheduler(self.table, prefill_chunk)
        self.speculation = speculation if speculation is not None else SpeculationPolicy()
        # Counters for exporters (they only grow).
        self.requests_finished = 0
        self.tokens_generated = 0
        self.prompt_tokens_processed = 0
        self.prompt_tokens_cached = 0

    # ---- requests ---------------------------------------------------------------------------------

    @property
    def has_work(self) -> bool:
        return not self.sched.idle

    def add_request(self, request: EngineRequest, stream: EngineStream, submitted_at: float | None = None) -> None:
        """Queue a validated request; its deltas go to `stream`."""
        submitted = time.monotonic() if submitted_at is None else submitted_at
        try:
            req = RequestState(request, stream, self.tokenizer, vocab_size=self.model.config.vocab_size,
                               device=self.model.device, max_len=self.max_context, submitted_at=submitted)
        except Exception as e:
            self._close(request, stream, [e])
            return
        if stream.cancelled:
            self._finish(req, [], "abort")
        else:
            self.sched.add(req)

    def abort(self, request_id: str, reason: str = "abort") -> None:
        req = self.sched.find(request_id)
        if req is not None:
            self._finish(req, [], reason)

    def close(self) -> None:
        """End every request ("abort") and give torch its threads back."""
        self.abort_all()
        self.runner.close()

    def abort_all(self) -> None:
        for req in [*self.sched.waiting, *self.sched.running_requests()]:
            self._finish(req, [], "abort")

    def abort_older_than(self, timeout_s: float) -> None:
        now = time.monotonic()
        for req in [*self.sched.waiting, *self.sched.running_requests()]:
            if now - req.submitted_at > timeout_s:
                self._finish(req, [], "abort")

    def stats(self) -> EngineStats:
        table, sched = self.table, self.sched
        return EngineStats(len(sched.running_requests()), len(sched.waiting), len(table) - table.num_free(),
                           len(table), table.used_tokens(), len(table) * self.max_context,
                           self.speculation.drafted_tokens, self.speculation.accepted_tokens)

    # ---- one step ---------------------------------------------------------------------------------

    def step(self) -> None:
        """Plan, run one forward, update. Errors fail the requests of the step, not the core."""
        try:
            self._step()
        except Exception as e:  # a bug must not leave every stream waiting forever
            self._fail(self.sched.running_requests(), e)

    def _step(self) -> None:
        sched, runner = self.sched, self.runner
        out: dict[int, tuple[RequestState, list[CompletionDelta]]] = {}
        try:
            runner.copy(sched.admit())
            if sched.prefilling is not None and sched.prefilling.admitted_at is None:
                sched.prefilling.admitted_at = time.monotonic()
            batch = sched.decode_batch()
            if batch is not None:
                self._make_drafts(batch)
            chunk = sched.prefill_chunk_to_run()
            dec_logits, pre_logits = runner.forward(batch, chunk)
        except Exception as e:  # the cache rows of everyone in the step are suspect now
            return self._fail(sched.running_requests(), e)

        if batch is not None:
            sched.decoded(batch)
            offsets, at = [], 0  # first logits row of each choice (drafts add rows)
            for d in batch.drafts:
                offsets.append(at)
                at += 1 + len(d)
            for i, draft in enumerate(batch.drafts):
                if draft:
                    c = batch.choices[i]
                    self._verify(sched.decoding[c.slot][0], c, draft, dec_logits[offsets[i]:offsets[i] + 1 + len(draft)],
                                 out)
            sampled = [i for i, c in enumerate(batch.choices) if c.sampling is not None and not batch.drafts[i]]
            if sampled:
                rows = [batch.choices[i] for i in sampled]
                ids, lps, infos = runner.sample("decode", dec_logits[[offsets[i] for i in sampled]],
                                                [c.sampling for c in rows])
                for choice, tok, lp, info in zip(rows, ids, lps, infos, strict=True):
                    req = sched.decoding[choice.slot][0]
                    out.setdefault(id(req), (req, []))[1].append(req.accept(choice, tok, info, lp))
                    if choice.finished:
                        sched.finish_choice(choice)
            beams: dict[int, tuple[RequestState, list[int]]] = {}
            for i, c in enumerate(batch.choices):
                if c.sampling is None:
                    req = sched.decoding[c.slot][0]
                    beams.setdefault(id(req), (req, []))[1].append(i)
            for req, rows in beams.values():
                self._advance_beams(req, dec_logits[[offsets[i] for i in rows]])

        if chunk is not None:
            req = chunk.request
            runner.copy(sched.prefilled(chunk))  # forks the prompt to the other choices after the last chunk
            self.prompt_tokens_processed += len(chunk.token_ids)
            if pre_logits is not None:
                self.prompt_tokens_cached += req.stream.metrics.cached_prompt_tokens
                if req.beam is not None:
                    self._advance_beams(req, pre_logits.expand(len(req.choices), -1), first=True)
                else:
                    ids, lps, infos = runner.sample("prefill", pre_logits.expand(len(req.choices), -1),
                                                    [c.sampling for c in req.choices])
                    deltas = [req.accept(c, t, i, lp) for c, t, lp, i in zip(req.choices, ids, lps, infos, strict=True)]
                    out[id(req)] = (req, deltas)
                    sched.start_decoding(req)

        for req, deltas in out.values():
            self.tokens_generated += len(deltas)
            if req.finished:
                self._finish(req, deltas)
            elif not req.stream.deliver(deltas):
                self._finish(req, [], "abort")  # its event loop is gone

    def _make_drafts(self, batch: DecodeBatch) -> None:
        """Prompt-lookup drafts for eligible choices while the batch is small (see speculation.py)."""
        batch.drafts = [[] for _ in batch.choices]
        policy = self.speculation
        if self.runner.native is None or not policy.max_rows or len(batch.choices) > policy.max_rows:
            return
        for i, c in enumerate(batch.choices):
            if c.sampling is None or not policy.eligible(c.sampling.params):
                continue
            req = self.sched.decoding[c.slot][0]
            room = req.max_new - len(c.output) - 1  # tokens left after the one this row yields anyway
            if room > 0:
                batch.drafts[i] = policy.draft(req.prompt, c.output, c.spec, room)

    def _verify(self, req: RequestState, c: ChoiceState, draft: list[int], logits: torch.Tensor, out: dict) -> None:
        """Greedy verification: the model's choice after the pending token, then after each draft token
        while the draft agreed with it. The K/V of the agreed drafts stay; the rest are overwritten later."""
        targets = logits.argmax(-1).tolist()
        logp = torch.log_softmax(logits.float(), -1)
        deltas = out.setdefault(id(req), (req, []))[1]
        accepted = 0
        for j, tok in enumerate(targets):
            deltas.append(req.accept(c, tok, None, float(logp[j, tok])))
            if c.finished or j >= len(draft) or draft[j] != tok:
                break
            accepted += 1
        self.table.slots[c.slot].tokens.extend(draft[:accepted])
        self.speculation.record(c.spec, len(draft), accepted)
        if c.finished:
            self.sched.finish_choice(c)

    def _advance_beams(self, req: RequestState, logits: torch.Tensor, first: bool = False) -> None:
        """Feed the beams' logits to the search; reorder their slots to follow the surviving beams."""
        step = req.beam.advance(logits)
        if step is None:
            results = req.beam_results()
            m = req.stream.metrics
            m.completion_tokens = sum(len(d.token_ids) for d in results)
            m.time_to_first_token_s = time.monotonic() - req.submitted_at
            req.stream.finish_reasons = [d.finish_reason for d in results]
            self.tokens_generated += m.completion_tokens
            self._finish(req, results)
            return
        src, tokens = step
        choices: list[ChoiceState] = req.choices
        if not first:  # row i continues beam src[i]: its slot takes that beam's K/V and history
            moves = [(choices[i].slot, choices[s].slot) for i, s in enumerate(src) if s != i]
            if moves:
                length = len(self.table.slots[choices[0].slot].tokens)
                self.runner.reorder(moves, length)
                history = {c.slot: list(self.table.slots[c.slot].tokens) for c in choices}
                for dst, s in moves:
                    self.table.slots[dst].tokens = list(history[s])
        for c, tok in zip(choices, tokens, strict=True):
            c.pending = tok
        if first:
            self.sched.start_decoding(req)

    # ---- ending requests --------------------------------------------------------------------------

    def _finish(self, req: RequestState, deltas: list[CompletionDelta], reason: str | None = None) -> None:
        """End a request: end its unfinished choices with `reason`, close its stream, free its slots."""
        if reason is not None:
            if req.beam is not None:
                req.stream.finish_reasons = [reason] * len(req.stream.finish_reasons)
                deltas = deltas + [CompletionDelta(i, "", [], None, reason)
                                   for i in range(len(req.stream.finish_reasons))]
                for c in req.choices:
                    c.finish_reason = reason
            for c in req.choices:
                if not c.finished:
                    deltas.append(CompletionDelta(c.index, c.end(reason), [], None, reason))
        self.sched.remove(req)
        m = req.stream.metrics
        m.queued_s = ((req.admitted_at or time.monotonic()) - req.submitted_at)
        m.total_s = time.monotonic() - req.submitted_at
        if req.beam is None:
            req.stream.finish_reasons = [c.finish_reason for c in req.choices] or req.stream.finish_reasons
        reasons = req.stream.finish_reasons
        self.requests_finished += 1
        if self.on_finish is not None:  # before the stream ends, so its consumer sees the hook's effects
            try:
                self.on_finish(req.request_id, m, reasons)
            except Exception:
                log.exception("on_finish hook failed")
        self._close(req.request, req.stream, deltas)

    def _close(self, request: EngineRequest, stream: EngineStream, items: list) -> None:
        """The one way a stream ends: its last items, then the end."""
        if self.on_close is not None:
            self.on_close(request)
        stream.deliver(items, end=True)

    def _fail(self, reqs: list[RequestState], error: Exception) -> None:
        """A forward failed: the requests in it get the error; their slots are forgotten."""
        log.exception("engine step failed", exc_info=error)
        for req in reqs:
            self.sched.remove(req)
            self.sched.drop_contents(req)
            self._close(req.request, req.stream, [error])
