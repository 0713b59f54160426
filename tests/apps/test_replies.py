"""ChatReplies with a fake model: what is stored however a reply ends (done, stopped, cancelled, failed)."""

from __future__ import annotations

import asyncio

import pytest
from app_harness import byte_tokenizer

from aigc.apps.chat.context import fit_messages
from aigc.apps.chat.conversations import ConversationStore
from aigc.apps.chat.model import GenerationParams
from aigc.apps.chat.replies import ChatReplies, ReplyError
from aigc.store import Database


class FakeStream:
    def __init__(self, pieces, fail_after=None):
        self.pieces = pieces
        self.fail_after = fail_after
        self.finish_reason = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cancelled = False

    async def __aiter__(self):
        for i, piece in enumerate(self.pieces):
            if self.cancelled:
                self.finish_reason = "abort"
                return
            if self.fail_after == i:
                raise RuntimeError("model exploded")
            await asyncio.sleep(0)
            self.completion_tokens += 1
            yield piece
        self.finish_reason = "stop"

    def cancel(self):
        self.cancelled = True


class FakeModel:
    name = "fake"
    window = 400
    exact_tokens = True

    def __init__(self):
        self.tokenizer = byte_tokenizer()

    def count_tokens(self, text):
        return len(text)

    def fit(self, messages, budget):
        return fit_messages(self.tokenizer, messages, budget)


@pytest.fixture
def replies():
    return ChatReplies(ConversationStore(Database("sqlite://")))


def run(replies, plan, stream, stop=lambda: False):
    async def collect():
        return [e async for e in replies.run(plan, stream, plan.commit(), is_stopped=stop)]
    return asyncio.run(collect())


PARAMS = GenerationParams(max_tokens=50)


def test_send_stores_user_then_reply(replies):
    c = replies.store.create(system_prompt="sys")
    plan = replies.plan_send(c["id"], "hello", FakeModel(), PARAMS)
    assert replies.store.get(c["id"])["messages"] == []  # nothing is written before commit
    events = run(replies, plan, FakeStream(["a", "b"]))
    assert [e["type"] for e in events] == ["start", "delta", "delta", "done"]
    assert events[0]["user_message"]["content"] == "hello" and events[0]["context"]["window"] == 400
    messages = replies.store.get(c["id"])["messages"]
    assert [(m["role"], m["content"], m["finish_reason"]) for m in messages] == [
        ("user", "hello", None), ("assistant", "ab", "stop")]
    assert messages[1]["prompt_tokens"] == plan.fitted.used and messages[1]["completion_tokens"] == 2


def test_stopped_reply_is_marked(replies):
    c = replies.store.create()
    stream = FakeStream(list("abcdef"))
    plan = replies.plan_send(c["id"], "q", FakeModel(), PARAMS)

    async def go():
        events = []
        async for e in replies.run(plan, stream, plan.commit(), is_stopped=lambda: stream.cancelled):
            events.append(e)
            if len(events) == 3:
                stream.cancel()  # what POST /stop does
        return events

    events = asyncio.run(go())
    assert events[-1]["message"]["finish_reason"] == "stopped" and events[-1]["message"]["content"] == "ab"


def test_cancelled_consumer_still_saves_partial_text(replies):
    """The client disconnected: the server closes the event generator mid-reply."""
    c = replies.store.create()
    stream = FakeStream(list("abcdef"))
    plan = replies.plan_send(c["id"], "q", FakeModel(), PARAMS)

    async def go():
        gen = replies.run(plan, stream, plan.commit())
        for _ in range(4):  # start + 3 deltas
            await gen.__anext__()
        await gen.aclose()

    asyncio.run(go())
    reply = replies.store.get(c["id"])["messages"][-1]
    assert (reply["content"], reply["finish_reason"]) == ("abc", "stopped") and stream.cancelled


def test_a_failing_model_keeps_what_came(replies):
    c = replies.store.create()
    plan = replies.plan_send(c["id"], "q", FakeModel(), PARAMS)
    events = run(replies, plan, FakeStream(list("abcd"), fail_after=2))
    assert events[-1]["type"] == "error" and "exploded" in events[-1]["error"]["message"]
    assert replies.store.get(c["id"])["messages"][-1]["finish_reason"] == "error"
    plan = replies.plan_send(c["id"], "again", FakeModel(), PARAMS)
    events = run(replies, plan, FakeStream(list("abcd"), fail_after=0))
    assert events[-1]["message"] is None  # nothing came: no empty reply is stored
    assert replies.store.get(c["id"])["messages"][-1]["content"] == "again"


def test_regenerate_and_edit_plans(replies):
    c = replies.store.create()
    model = FakeModel()
    for text in ("one", "two"):
        plan = replies.plan_send(c["id"], text, model, PARAMS)
        run(replies, plan, FakeStream(["r-" + text]))
    plan = replies.plan_regenerate(c["id"], model, PARAMS)
    assert [m["content"] for m in plan.fitted.messages] == ["one", "r-one", "two"]
    run(replies, plan, FakeStream(["new"]))
    assert [m["content"] for m in replies.store.get(c["id"])["messages"]] == ["one", "r-one", "two", "new"]
    first = replies.store.get(c["id"])["messages"][0]
    plan = replies.plan_edit(c["id"], first["id"], "ONE", model, PARAMS)
    assert [m["content"] for m in plan.fitted.messages] == ["ONE"]
    assert len(replies.store.get(c["id"])["messages"]) == 4  # truncation waits for the commit
    run(replies, plan, FakeStream(["fresh"]))
    assert [m["content"] for m in replies.store.get(c["id"])["messages"]] == ["ONE", "fresh"]


def test_bad_requests(replies):
    c = replies.store.create()
    model = FakeModel()
    with pytest.raises(ReplyError, match="no user message"):
        replies.plan_regenerate(c["id"], model, PARAMS)
    with pytest.raises(ReplyError, match="empty"):
        replies.plan_send(c["id"], "   ", model, PARAMS)
    with pytest.raises(ReplyError, match="smaller than"):
        replies.plan_send(c["id"], "x", model, GenerationParams(max_tokens=400))
    with pytest.raises(ReplyError) as e:
        replies.plan_send(c["id"], "x" * 500, model, PARAMS)
    assert e.value.code == "context_length_exceeded"


def test_the_meter_for_a_conversation(replies):
    c = replies.store.create()
    model = FakeModel()
    assert replies.current_context(c["id"], model, PARAMS)["used_tokens"] == 0
    for i in range(4):
        plan = replies.plan_send(c["id"], f"question {i} " + "z" * 40, model, PARAMS)
        run(replies, plan, FakeStream(["answer " + "w" * 40]))
    report = replies.current_context(c["id"], model, GenerationParams(max_tokens=200))
    ids = [m["id"] for m in replies.store.get(c["id"])["messages"]]
    assert report["used_tokens"] <= 200 and report["dropped_messages"] == ids[: len(report["dropped_messages"])]
    assert report["dropped_messages"]
    full = replies.current_context(c["id"], model, GenerationParams(max_tokens=390))
    assert full["overflow"] and full["dropped_messages"] == ids[:6]
