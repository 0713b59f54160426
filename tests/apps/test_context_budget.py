"""fit_messages: the system prompt stays, the oldest turns go first, the newest never; bisection finds
exactly what dropping one turn at a time would."""

from __future__ import annotations

import pytest
from app_harness import byte_tokenizer

from aigc.apps.chat.context import ContextOverflowError, fit_messages
from aigc.apps.chat.model import ApproxTokenizer


def chat(turns: int, size: int = 40) -> list[dict]:
    out = [{"id": None, "role": "system", "content": "SYSTEM"}]
    for i in range(turns):
        out += [{"id": 2 * i, "role": "user", "content": f"q{i} " + "x" * size},
                {"id": 2 * i + 1, "role": "assistant", "content": f"a{i} " + "y" * size}]
    return out + [{"id": 2 * turns, "role": "user", "content": "newest"}]


def linear(tokenizer, messages, budget):
    """The obvious algorithm, one turn at a time (the reference)."""
    system, rest = messages[:1], messages[1:]
    while True:
        ids = tokenizer.apply_chat_template([{"role": m["role"], "content": m["content"]} for m in system + rest],
                                            add_generation_prompt=True, tokenize=True)
        if len(ids) <= budget:
            return len(messages) - 1 - len(rest)
        rest = rest[2:]


@pytest.mark.parametrize("budget", [150, 300, 555, 1000, 5000])
def test_bisection_matches_dropping_one_turn_at_a_time(budget):
    tok = byte_tokenizer()
    messages = chat(12)
    fitted = fit_messages(tok, messages, budget)
    assert len(fitted.dropped) == linear(tok, messages, budget)
    assert fitted.used <= budget and fitted.messages[0]["content"] == "SYSTEM"
    assert fitted.messages[-1]["content"] == "newest"
    assert [m["id"] for m in fitted.dropped] == list(range(len(fitted.dropped)))  # oldest first, whole turns
    assert len(fitted.dropped) % 2 == 0


def test_everything_fits():
    fitted = fit_messages(byte_tokenizer(), chat(2), 10_000)
    assert fitted.dropped == [] and len(fitted.messages) == 6 and fitted.budget == 10_000


def test_the_newest_message_alone_too_long():
    with pytest.raises(ContextOverflowError, match="only 50 fit"):
        fit_messages(byte_tokenizer(), chat(3), 50)


def test_messages_may_carry_extra_keys():
    tok = byte_tokenizer()
    fitted = fit_messages(tok, [{"id": 7, "role": "user", "content": "hi", "note": {"any": "thing"}}], 100)
    assert fitted.messages[0]["id"] == 7


def test_approximate_counter_for_remote_models():
    approx = ApproxTokenizer()
    assert approx.count_tokens("abcdef") == 2
    messages = [{"role": "user", "content": "x" * 300}]
    assert len(approx.apply_chat_template(messages, add_generation_prompt=True)) == 4 + 100 + 3
    assert len(fit_messages(approx, chat(20), 400).dropped) > 0
