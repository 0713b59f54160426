"""KV-cache slot bookkeeping: which slot belongs to whom, what its cache holds, the prefix cache.

The engine allocates one `KVCache` of `slots` rows once. This table tracks, per slot, the token ids
whose keys/values are valid in that row (`tokens`, so the valid length is `len(tokens)`) and who
owns the slot. A slot whose sequence finished keeps its tokens: it is a cached prefix that a later
request with the same start (a system prompt, the previous turns of a chat) reuses instead of
recomputing. Free slots are handed out empty-first, then least recently used, so cached prefixes
live as long as slots are not needed. No tensors here: copies are done by the caller.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two id lists (compares blocks with C-speed slice equality)."""
    n = min(len(a), len(b))
    i, block = 0, 64
    while i + block <= n and a[i : i + block] == b[i : i + block]:
        i += block
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Slot:
    index: int
    tokens: list[int] = field(default_factory=list)  # ids whose K/V are valid in this row, in order
    owner: str | None = None  # request id while in use; None = free (maybe holding a cached prefix)
    last_used: int = 0  # LRU clock value of the last release/use


@dataclass
class PrefixMatch:
    slot: int  # slot whose first `length` tokens equal the prompt's
    length: int
    free: bool  # the slot holds a cached prefix nobody uses (it may be taken over without a copy)


class SlotTable:
    def __init__(self, slots: int):
        self.slots = [Slot(i) for i in range(slots)]
        self._clock = itertools.count(1)

    def __len__(self) -> int:
        return len(self.slots)

    # ---- queries ----------------------------------------------------------------------------------

    def free_slots(self) -> list[Slot]:
        return [s for s in self.slots if s.owner is None]

    def num_free(self) -> int:
        return sum(s.owner is None for s in self.slots)

    def used_tokens(self) -> int:
        """Valid cache positions held by requests in flight (cached prefixes are reclaimable)."""
        return sum(len(s.tokens) for s in self.slots if s.owner is not None)

    def cached_tokens(self) -> int:
        return sum(len(s.tokens) for s in self.slots if s.owner is None)

    def longest_prefix(self, prompt: list[int], limit: int) -> PrefixMatch | None:
        """The slot (in use or free) sharing the longest start with `prompt`, capped at `limit` tokens.

        A slot in use is a valid source too: its first tokens' K/V never change, so two concurrent
        requests with one system prompt share the work. Ties prefer a free slot (no copy needed).
        """
        best: PrefixMatch | None = None
        for s in self.slots:
            if not s.tokens:
                continue
            n = min(common_prefix_len(s.tokens, prompt), limit)
            free = s.owner is None
            if n > 0 and (best is None or n > best.length or (n == best.length and free and not best.free)):
                best = PrefixMatch(s.index, n, free)
        return best

    # ---- changes ----------------------------------------------------------------------------------

    def acquire(self, owner: str, exclude: int | None = None) -> Slot:
        """Take a free slot for `owner`: an empty one first, else the least recently used cached one.

        The slot's old contents are forgotten (its tokens list is emptied).
        """
        candidates = [s for s in self.slots if s.owner is None and s.index != exclude]
        if not candidates:
            raise RuntimeError("no free KV slot")  # the scheduler checks num_free() before admitting
        # Lowest empty slot first (keeps the decode batch's slot range tight), then LRU.
        slot = min(candidates, key=lambda s: (1, s.last_used, s.index) if s.tokens else (0, 0, s.index))
        slot.owner, slot.tokens, slot.last_used = owner, [], next(self._clock)
        return slot

    def take_over(self, index: int, owner: str, keep: int) -> Slot:
        """Claim a free slot whose cached prefix the new owner reuses; keep its first `keep` tokens."""
        slot = self.slots[index]
        if slot.owner is not None:
            raise RuntimeError(f"slot {index} is in use")
        slot.owner, slot.last_used = owner, next(self._clock)
        del slot.tokens[keep:]
        return slot

    def release(self, index: int) -> None:
        """Free a slot; its tokens stay as a cached prefix until the slot is needed again."""
        slot = self.slots[index]
        slot.owner, slot.last_used = None, next(self._clock)

    def clear(self, index: int) -> None:
        """Free a slot and forget its contents (e.g. after a failed forward left them undefined)."""
        slot = self.slots[index]
        slot.owner, slot.tokens = None, []
