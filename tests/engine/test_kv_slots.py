"""Slot bookkeeping and the prefix cache, without a model."""

from __future__ import annotations

import pytest

from aigc.engine.kv_slots import SlotTable, common_prefix_len


@pytest.mark.parametrize(("n", "diff_at"), [(0, None), (5, 3), (200, 64), (200, 130), (200, None), (64, 63)])
def test_common_prefix_len(n, diff_at):
    a = list(range(n))
    b = list(a)
    if diff_at is not None:
        b[diff_at] = -1
    expected = n if diff_at is None else diff_at
    assert common_prefix_len(a, b) == expected
    assert common_prefix_len(a, b + [7, 8]) == expected  # a longer list does not matter
    assert common_prefix_len(a[:10], a) == min(10, n)


def test_acquire_prefers_empty_slots_then_least_recently_used():
    t = SlotTable(3)
    a, b, c = (t.acquire(x) for x in "abc")
    assert [a.index, b.index, c.index] == [0, 1, 2]
    a.tokens, b.tokens, c.tokens = [1], [2], [3]
    t.release(1)
    t.release(0)
    t.release(2)
    assert t.num_free() == 3 and t.cached_tokens() == 3
    d = t.acquire("d")
    assert d.index == 1 and d.tokens == []  # released first = least recently used; contents forgotten
    t.clear(0)
    assert t.acquire("e").index == 0  # an empty slot beats any cached one
    assert t.acquire("f", exclude=None).index == 2
    with pytest.raises(RuntimeError):
        t.acquire("g")


def test_longest_prefix_and_take_over():
    t = SlotTable(3)
    s0, s1 = t.acquire("x"), t.acquire("y")
    s0.tokens, s1.tokens = [1, 2, 3, 4, 5], [1, 2, 9]
    t.release(0)
    m = t.longest_prefix([1, 2, 3, 4, 6], limit=10)
    assert (m.slot, m.length, m.free) == (0, 4, True)
    assert t.longest_prefix([1, 2, 3, 4, 6], limit=3).length == 3
    # A slot in use is a valid source; on a tie the free one wins (no copy needed).
    m = t.longest_prefix([1, 2, 7], limit=10)
    assert (m.slot, m.length) == (0, 2)
    assert t.longest_prefix([8], limit=10) is None
    taken = t.take_over(0, "z", keep=4)
    assert taken.tokens == [1, 2, 3, 4] and taken.owner == "z"
    with pytest.raises(RuntimeError):
        t.take_over(1, "w", keep=1)
    assert t.used_tokens() == 4 + 3
