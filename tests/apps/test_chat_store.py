"""ConversationStore and the transcript formats, without a server."""

from __future__ import annotations

import pytest

from aigc.apps.chat.conversations import TITLE_CHARS, ConversationStore, NotFoundError
from aigc.apps.chat.transcript import TranscriptError, export_json, export_markdown, import_json, parse_import
from aigc.store import Database


@pytest.fixture
def store(database_url) -> ConversationStore:
    """On SQLite and on PostgreSQL (when the tests have one, see tests/conftest.py)."""
    return ConversationStore(Database(database_url))


def test_owners_do_not_see_each_others_conversations(store):
    from aigc.accounts import UserStore

    users = UserStore(store.db)
    a, b = users.add("a", None), users.add("b", None)
    mine, theirs = store.scoped(a.id), store.scoped(b.id)
    c = mine.create(title="a's")
    m = mine.add_message(c["id"], "user", "secret 退货")
    assert [x["id"] for x in mine.list()] == [c["id"]] and theirs.list() == [] and store.list() == []
    for call in (lambda: theirs.get(c["id"]), lambda: theirs.delete(c["id"]),
                 lambda: theirs.add_message(c["id"], "user", "x"), lambda: theirs.set_feedback(m["id"], 1),
                 lambda: theirs.get_message(c["id"], m["id"]), lambda: theirs.update(c["id"], title="b's")):
        with pytest.raises(NotFoundError):
            call()
    assert theirs.search("退货") == [] and [x["id"] for x in mine.search("退货")] == [c["id"]]
    mine.set_feedback(m["id"], 1)
    assert theirs.list_feedback() == [] and len(mine.list_feedback()) == 1
    users.remove("a")  # a user's data goes with them
    assert mine.list() == []


def test_messages_get_positions_parents_and_a_title(store):
    c = store.create()
    first = store.add_message(c["id"], "user", "  What is   the capital\nof France? " + "x" * 100)
    second = store.add_message(c["id"], "assistant", "Paris.", model="m", completion_tokens=2, finish_reason="stop")
    assert (first["position"], first["parent_id"]) == (0, None)
    assert (second["position"], second["parent_id"]) == (1, first["id"])
    got = store.get(c["id"])
    assert got["title"].startswith("What is the capital of France?") and len(got["title"]) == TITLE_CHARS
    assert [m["content"] for m in got["messages"]] == [first["content"], "Paris."]
    assert got["messages"][1]["finish_reason"] == "stop" and got["messages"][1]["model"] == "m"


def test_list_is_newest_first_with_counts(store):
    a = store.create(title="a")
    b = store.create(title="b")
    store.add_message(a["id"], "user", "bump")  # a is now the most recently updated
    listed = store.list()
    assert [(c["title"], c["message_count"]) for c in listed] == [("a", 1), ("b", 0)]
    store.update(b["id"], title="b2")
    assert store.list()[0]["title"] == "b2"


def test_siblings_and_the_active_path(store):
    c = store.create()
    ids = [store.add_message(c["id"], r, t)["id"] for r, t in [("user", "1"), ("assistant", "2"), ("user", "3")]]
    again = store.add_message(c["id"], "assistant", "2 again", parent_id=ids[0])  # a regenerated reply
    assert again["position"] == 3 and again["siblings"] == [ids[1], again["id"]]
    assert [m["content"] for m in store.get(c["id"])["messages"]] == ["1", "2 again"]
    assert [m["content"] for m in store.switch_branch(c["id"], ids[1])["messages"]] == ["1", "2", "3"]
    assert len(store.get(c["id"], every_branch=True)["messages"]) == 4
    assert store.add_message(c["id"], "assistant", "4")["parent_id"] == ids[2]  # after the active path


def test_feedback(store):
    c = store.create()
    m = store.add_message(c["id"], "assistant", "answer", model="m")
    store.set_feedback(m["id"], -1, "wrong")
    store.set_feedback(m["id"], 1, "ok now")  # replaces
    assert store.get(c["id"])["messages"][0]["feedback"] == {"rating": 1, "comment": "ok now"}
    assert [(f["rating"], f["content"], f["model"]) for f in store.list_feedback()] == [(1, "answer", "m")]
    store.clear_feedback(m["id"])
    assert store.list_feedback() == []


def test_unknown_ids(store):
    with pytest.raises(NotFoundError):
        store.get(99)
    with pytest.raises(NotFoundError):
        store.add_message(99, "user", "x")
    with pytest.raises(NotFoundError):
        store.set_feedback(99, 1)
    c = store.create()
    other = store.create()
    m = store.add_message(other["id"], "user", "x")
    with pytest.raises(NotFoundError):
        store.get_message(c["id"], m["id"])  # a message of another conversation


def test_search_matches_titles_and_messages(store):
    a = store.create(title="Trip to Hangzhou")
    b = store.create()
    store.add_message(b["id"], "user", "How do I cook 红烧肉 at home?")
    assert [h["id"] for h in store.search("hangzhou")] == [a["id"]]
    hit = store.search("红烧肉")[0]
    assert hit["id"] == b["id"] and "红烧肉" in hit["match"]["snippet"]
    assert store.search("nothing like this") == []


def test_export_import_round_trip(store):
    c = store.create(title="Round trip", system_prompt="Be kind.", model="m", params={"temperature": 0.1})
    store.add_message(c["id"], "user", "Show code")
    reply = store.add_message(c["id"], "assistant", "```py\nprint(1)\n```", model="m", finish_reason="stopped")
    store.set_feedback(reply["id"], -1, "meh")
    doc = export_json(store.get(c["id"]))
    copy = import_json(store, doc)
    assert copy["id"] != c["id"]
    assert export_json(copy)["messages"] == [
        {**m, "created_at": copy["messages"][i]["created_at"]} for i, m in enumerate(doc["messages"])]
    assert (copy["title"], copy["system_prompt"], copy["params"]) == ("Round trip", "Be kind.", {"temperature": 0.1})


def test_markdown_export(store):
    c = store.create(title="Notes", system_prompt="sys ``` fence")
    store.add_message(c["id"], "user", "hi")
    store.add_message(c["id"], "assistant", "hello", model="m", finish_reason="stopped")
    md = export_markdown(store.get(c["id"]))
    assert md.startswith("# Notes\n")
    assert "## System\n\n````\nsys ``` fence\n````" in md  # the fence outgrows the backticks inside
    assert "## User\n\nhi" in md and "## Assistant (m)\n\nhello" in md and "*(stopped)*" in md


def test_import_names_an_untitled_conversation(store):
    conv, messages = parse_import({"messages": [{"role": "user", "content": "Plan a trip"}]})
    assert conv["title"] == "Plan a trip" and messages[0]["role"] == "user"
    with pytest.raises(TranscriptError, match="feedback"):
        parse_import({"messages": [{"role": "assistant", "content": "x", "feedback": {"rating": 3}}]})
    with pytest.raises(TranscriptError, match="tokens"):
        parse_import({"messages": [{"role": "assistant", "content": "x", "tokens": "many"}]})
