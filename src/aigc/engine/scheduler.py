"""Scheduler: which requests hold KV slots, and what the next engine step computes.

Continuous batching: a step is one batched decode forward over every running choice plus at most
one prefill chunk (<= `prefill_chunk` tokens) of the request being admitted. Requests join the
decode batch as soon as their prefill ends and leave it the moment they finish, so a long prompt
delays running streams by one chunk per step, never by its whole prefill.

Admission is first come, first served and lazy: the next waiting request gets its slots only when
no other request is prefilling. Besides keeping one prefill at a time, this lets a request reuse
the prefix its predecessor just computed (two chats with one system prompt arriving together).

Decode batch layout: running choices may sit in any slots; the decode forward covers the slot range
[lowest running, highest running] as one view of the cache (no gather, no KV moves). A slot inside
that range that is not decoding (free, cached, prefilling, reserved for a fork) rides along with a
dummy token written at position len(slot.tokens): the first position whose K/V is not valid, so
the write destroys nothing, and the causal rule (key_pos <= query_pos) never lets a real query see
it. We chose this over compaction (moving K/V between slots whenever a choice finishes) because a
move costs a copy of the whole sequence while an idle row costs one row of a matmul that is bound by
reading the weights; slots are handed out lowest-empty-first, so the range stays tight.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from aigc.engine.kv_slots import SlotTable
from aigc.engine.request_state import ChoiceState, RequestState


@dataclass
class SlotCopy:
    src: int
    dst: int
    length: int


@dataclass
class DecodeBatch:
    lo: int  # first cache row of the forward
    tokens: list[int]  # input token per row lo..hi-1 (0 for idle rows)
    positions: list[int]  # cache position per row
    active: list[int]  # offsets (row - lo) of the rows that decode
    choices: list[ChoiceState]  # the decoding choice of each active row, same order
    # draft tokens (speculative decoding) fed after each active row's token; [] = none
    drafts: list[list[int]] = field(default_factory=list)


@dataclass
class PrefillChunk:
    request: RequestState
    slot: int
    start: int
    token_ids: list[int]

    @property
    def last(self) -> bool:
        return self.start + len(self.token_ids) == len(self.request.prompt)


class Scheduler:
    def __init__(self, table: SlotTable, prefill_chunk: int):
        self.table = table
        self.prefill_chunk = prefill_chunk
        self.waiting: deque[RequestState] = deque()
        self.prefilling: RequestState | None = None
        self.decoding: dict[int, tuple[RequestState, ChoiceState]] = {}  # slot -> running choice

    # ---- queries ----------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self.waiting and self.prefilling is None and not self.decoding

    def running_requests(self) -> list[RequestState]:
        reqs = {id(r): r for r, _ in self.decoding.values()}
        if self.prefilling is not None:
            reqs[id(self.prefilling)] = self.prefilling
        return list(reqs.values())

    def find(self, request_id: str) -> RequestState | None:
        for r in [*self.waiting, *self.running_requests()]:
            if r.request_id == request_id:
                return r
        return None

    # ---- admission --------------------------------------------------------------------------------

    def add(self, req: RequestState) -> None:
        self.waiting.append(req)

    def admit(self) -> list[SlotCopy]:
        """Give the first waiting request its slots if none is prefilling; return K/V copies to do now.

        The request's first slot starts with the longest prefix any slot shares with its prompt:
        a free cached slot is taken over when that loses nothing (the new prompt extends all of it)
        or no other slot is free; otherwise the prefix is copied into a fresh slot.
        """
        if self.prefilling is not None or not self.waiting:
            return []
        req = self.waiting[0]
        n = len(req.choices)
        if self.table.num_free() < n:
            return []
        self.waiting.popleft()
        rid, table, copies = req.request_id, self.table, []
        # Keep at least one prompt token to prefill: its logits give the first sampled token.
        match = table.longest_prefix(req.prompt, limit=len(req.prompt) - 1)
        if match is None:
            slots = [table.acquire(rid) for _ in range(n)]
        else:
            src = table.slots[match.slot]
            spare = table.num_free() - match.free  # free slots other than the source
            if match.free and (match.length == len(src.tokens) or spare < n):
                slots = [table.take_over(src.index, rid, keep=match.length)]
                slots += [table.acquire(rid) for _ in range(n - 1)]
            else:
                slots = [table.acquire(rid, exclude=src.index) for _ in range(n)]
                slots[0].tokens = src.tokens[: match.length]
                copies.append(SlotCopy(src.index, slots[0].index, match.length))
            req.stream.metrics.cached_prompt_tokens = match.length
        req.slots = [s.index for s in slots]
        req.prefilled = len(slots[0].tokens)
        self.prefilling = req
        return copies

    # ---- planning ---------------------------------------------------------------------------------

    def decode_batch(self) -> DecodeBatch | None:
        if not self.decoding:
            return None
        running = sorted(self.decoding)
        lo, hi = running[0], running[-1] + 1
        tokens = [0] * (hi - lo)
        positions = [len(self.table.slots[i].tokens) for i in range(lo, hi)]
        for s in running:
            tokens[s - lo] = self.decoding[s][1].pending
        choices = [self.decoding[s][1] for s in running]
        return DecodeBatch(lo, tokens, positions, [s - lo for s in running], choices)

    def prefill_chunk_to_run(self) -> PrefillChunk | None:
        req = self.prefilling
        if req is None:
            return None
        start = req.prefilled
        return PrefillChunk(req, req.slots[0], start, req.prompt[start : start + self.prefill_chunk])

    # ---- progress ---------------------------------------------------------------------------------

    def decoded(self, batch: DecodeBatch) -> None:
        """The decode forward wrote each active row's pending token into its slot."""
        for c in batch.choices:
            self.table.slots[c.slot].tokens.append(c.pending)

    def prefilled(self, chunk: PrefillChunk) -> list[SlotCopy]:
        """A chunk's K/V are in the cache. After the last one, fork the prompt into the other choices'
        slots (copies for the caller to do) and move the choices to the decode batch."""
        req = chunk.request
        self.table.slots[chunk.slot].tokens.extend(chunk.token_ids)
        req.prefilled += len(chunk.token_ids)
        if not chunk.last:
            return []
        self.prefilling = None
        prompt_len = len(req.prompt)
        copies = [SlotCopy(req.slots[0], dst, prompt_len) for dst in req.slots[1:]]
        for dst in req.slots[1:]:
            self.table.slots[dst].tokens = list(req.prompt)
        for choice, slot in zip(req.choices, req.slots, strict=True):
            choice.slot = slot
        return copies

    def start_decoding(self, req: RequestState) -> None:
        """Choices that got their first token and did not finish with it join the decode batch."""
        for c in req.choices:
            if c.finished:
                self.table.release(c.slot)
            else:
                self.decoding[c.slot] = (req, c)

    def finish_choice(self, choice: ChoiceState) -> None:
        self.decoding.pop(choice.slot, None)
        self.table.release(choice.slot)

    def remove(self, req: RequestState) -> None:
        """Take a request out wherever it is and free its slots (their valid K/V stay cached)."""
        if req in self.waiting:
            self.waiting.remove(req)
            return
        if self.prefilling is req:
            self.prefilling = None
        for slot in req.slots:
            self.decoding.pop(slot, None)
            if self.table.slots[slot].owner == req.request_id:
                self.table.release(slot)

    def drop_contents(self, req: RequestState) -> None:
        """After a failed forward: forget what the request's slots hold (it may be half written)."""
        for slot in req.slots:
            if self.table.slots[slot].owner in (None, req.request_id):
                self.table.clear(slot)
