"""The web app's API over real HTTP: conversations, replies (send, stop, disconnect, regenerate, edit),
feedback, export/import and every kind of bad input, in the server's JSON error shape."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from app_harness import SCRIPTED, byte_tokenizer, error_of, events_of

FAST = {"max_tokens": 3, "temperature": 0}


def new_conversation(http: httpx.Client, **fields) -> dict:
    r = http.post("/api/conversations", json=fields)
    assert r.status_code == 201, r.text
    return r.json()


def send(http: httpx.Client, cid: int, content: str, params: dict | None = None) -> list[dict]:
    return events_of(http.post(f"/api/conversations/{cid}/messages", json={"content": content, "params": params or FAST}))


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# ---------------------------------------------------------------------------- conversations


def test_models_lists_served_models(http):
    body = http.get("/api/models").json()
    assert body["default"] == SCRIPTED
    assert body["data"] == [{"id": SCRIPTED, "window": 2048, "remote": False, "ready": True}]


def test_create_list_rename_delete(http):
    c = new_conversation(http, title="First", system_prompt="Be brief.", params={"temperature": 0.2})
    assert c["title"] == "First" and c["system_prompt"] == "Be brief." and c["params"] == {"temperature": 0.2}
    listed = http.get("/api/conversations").json()["data"]
    assert listed[0]["id"] == c["id"] and listed[0]["message_count"] == 0
    r = http.patch(f"/api/conversations/{c['id']}", json={"title": "Renamed", "params": {"top_p": 0.5}})
    assert r.status_code == 200 and r.json()["title"] == "Renamed"
    assert r.json()["params"] == {"temperature": 0.2, "top_p": 0.5}  # merged, not replaced
    assert http.delete(f"/api/conversations/{c['id']}").status_code == 204
    error_of(http.get(f"/api/conversations/{c['id']}"), 404, "not_found")
    assert all(x["id"] != c["id"] for x in http.get("/api/conversations").json()["data"])


def test_send_streams_and_persists_both_messages(http, app_server):
    _, engine = app_server
    c = new_conversation(http, system_prompt="You are terse.")
    events = send(http, c["id"], "Hello there")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("delta") == 3
    start, done = events[0], events[-1]
    assert start["user_message"]["content"] == "Hello there" and start["model"] == SCRIPTED
    assert start["context"]["window"] == 2048 and 0 < start["context"]["used_tokens"] < 2048
    assert done["message"]["content"] == "word0 word1 word2 " and done["message"]["finish_reason"] == "length"
    assert done["message"]["completion_tokens"] == 3 and done["context"]["used_tokens"] == start["context"]["used_tokens"] + 3
    # The prompt the engine got was rendered from the system prompt and the message.
    prompt = byte_text(engine.requests[-1].prompt_token_ids)
    assert "You are terse." in prompt and "Hello there" in prompt
    stored = http.get(f"/api/conversations/{c['id']}").json()
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [
        ("user", "Hello there"), ("assistant", "word0 word1 word2 ")]
    assert stored["title"] == "Hello there"  # named after its first message
    assert stored["messages"][1]["parent_id"] == stored["messages"][0]["id"]


def byte_text(ids: list[int]) -> str:
    return byte_tokenizer().decode(ids)


def test_params_and_model_are_remembered(http, app_server):
    _, engine = app_server
    c = new_conversation(http)
    send(http, c["id"], "hi", {"max_tokens": 2, "temperature": 0.3, "top_p": 0.8, "seed": 7})
    p = engine.requests[-1].params
    assert (p.max_tokens, p.temperature, p.top_p, p.seed) == (2, 0.3, 0.8, 7)
    stored = http.get(f"/api/conversations/{c['id']}").json()
    assert stored["params"] == {"temperature": 0.3, "top_p": 0.8, "max_tokens": 2, "seed": 7}
    events_of(http.post(f"/api/conversations/{c['id']}/regenerate", json={}))
    assert engine.requests[-1].params.seed == 7  # the stored params are used when none are sent


def test_regenerate_answers_again(http):
    c = new_conversation(http)
    send(http, c["id"], "one")
    before = http.get(f"/api/conversations/{c['id']}").json()["messages"]
    events = events_of(http.post(f"/api/conversations/{c['id']}/regenerate", json={"params": {"max_tokens": 2}}))
    assert events[0]["user_message"] is None and events[-1]["message"]["content"] == "word0 word1 "
    after = http.get(f"/api/conversations/{c['id']}").json()["messages"]
    assert len(after) == 2 and after[0] == before[0] and after[1]["id"] != before[1]["id"]


def test_edit_answers_the_new_text(http):
    c = new_conversation(http)
    send(http, c["id"], "first question")
    send(http, c["id"], "second question")
    first = http.get(f"/api/conversations/{c['id']}").json()["messages"][0]
    events = events_of(http.post(f"/api/conversations/{c['id']}/messages/{first['id']}/edit",
                                 json={"content": "first, edited", "params": FAST}))
    # The edit is a sibling of the first question (test_branching.py: the old branch stays).
    assert events[0]["user_message"]["content"] == "first, edited" and events[0]["user_message"]["parent_id"] is None
    messages = http.get(f"/api/conversations/{c['id']}").json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [("user", "first, edited"), ("assistant", "word0 word1 word2 ")]
    assert [m["position"] for m in messages] == [4, 5]


def test_edit_rejects_assistant_messages_and_unknown_ids(http):
    c = new_conversation(http)
    send(http, c["id"], "q")
    reply = http.get(f"/api/conversations/{c['id']}").json()["messages"][1]
    error_of(http.post(f"/api/conversations/{c['id']}/messages/{reply['id']}/edit", json={"content": "x"}), 400,
             "not_a_user_message")
    error_of(http.post(f"/api/conversations/{c['id']}/messages/999999/edit", json={"content": "x"}), 404)


def test_stop_keeps_the_partial_reply(http, app_server):
    _, engine = app_server
    engine.delay = 0.05
    c = new_conversation(http)
    events = []
    with http.stream("POST", f"/api/conversations/{c['id']}/messages",
                     json={"content": "long answer please", "params": {"max_tokens": 500}}) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if len(events) == 4:  # start + 3 deltas
                    assert http.post(f"/api/conversations/{c['id']}/stop").json() == {"stopped": True}
    done = events[-1]
    assert done["type"] == "done" and done["message"]["finish_reason"] == "stopped"
    assert 3 <= done["message"]["completion_tokens"] < 500
    stored = http.get(f"/api/conversations/{c['id']}").json()["messages"][-1]
    assert stored["finish_reason"] == "stopped" and stored["content"] == done["message"]["content"]
    assert engine.streams[-1].cancelled
    assert http.post(f"/api/conversations/{c['id']}/stop").json() == {"stopped": False}


def test_client_disconnect_keeps_the_partial_reply(http, app_server):
    server, engine = app_server
    engine.delay = 0.05
    c = new_conversation(http)
    with httpx.Client(base_url=server.url, timeout=30) as other:
        with other.stream("POST", f"/api/conversations/{c['id']}/messages",
                          json={"content": "go", "params": {"max_tokens": 500}}) as r:
            seen = 0
            for line in r.iter_lines():
                seen += line.startswith("data:")
                if seen == 4:
                    break  # leave mid-reply: closing the response drops the connection
    stored = wait_for(lambda: [m for m in http.get(f"/api/conversations/{c['id']}").json()["messages"]
                               if m["role"] == "assistant"])
    assert stored[0]["finish_reason"] == "stopped" and stored[0]["content"].startswith("word0 word1 word2 ")
    assert wait_for(lambda: engine.streams[-1].cancelled)
    assert not http.get(f"/api/conversations/{c['id']}").json()["generating"]


def test_second_reply_while_one_runs_is_409(http, app_server):
    _, engine = app_server
    engine.delay = 0.05
    c = new_conversation(http)
    with http.stream("POST", f"/api/conversations/{c['id']}/messages",
                     json={"content": "a", "params": {"max_tokens": 200}}) as r:
        acted = False
        for line in r.iter_lines():
            if line.startswith("data:") and not acted:
                acted = True
                error_of(http.post(f"/api/conversations/{c['id']}/messages", json={"content": "b"}), 409,
                         "reply_in_progress")
                http.post(f"/api/conversations/{c['id']}/stop")
    messages = http.get(f"/api/conversations/{c['id']}").json()["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["a"]


def test_busy_model_stores_nothing(http, app_server):
    _, engine = app_server
    c = new_conversation(http)
    engine.busy = True
    r = http.post(f"/api/conversations/{c['id']}/messages", json={"content": "hello"})
    error_of(r, 429)
    assert http.get(f"/api/conversations/{c['id']}").json()["messages"] == []


def test_context_budget_drops_oldest_turns_and_reports_them(http, app_server):
    app_server[1].delay = 0
    c = new_conversation(http, system_prompt="SYSTEM RULES")
    for i in range(6):
        send(http, c["id"], f"question {i} " + "x" * 150, {"max_tokens": 3})
    # With a 2048-token window and max_tokens 1400, only ~650 prompt tokens fit: old turns drop.
    events = send(http, c["id"], "last one", {"max_tokens": 1400})
    context = events[0]["context"]
    assert context["dropped_messages"] and context["used_tokens"] <= 2048 - 1400
    messages = http.get(f"/api/conversations/{c['id']}").json()["messages"]
    ids = [m["id"] for m in messages]
    assert context["dropped_messages"] == ids[: len(context["dropped_messages"])]  # the oldest ones
    prompt = byte_text(app_server[1].requests[-1].prompt_token_ids)
    assert "SYSTEM RULES" in prompt and "last one" in prompt and "question 0" not in prompt
    meter = http.get(f"/api/conversations/{c['id']}/context").json()
    assert meter["window"] == 2048 and meter["model"] == SCRIPTED


def test_a_message_too_long_for_the_window_is_400(http):
    c = new_conversation(http)
    r = http.post(f"/api/conversations/{c['id']}/messages", json={"content": "y" * 3000, "params": {"max_tokens": 10}})
    error_of(r, 400, "context_length_exceeded")
    r = http.post(f"/api/conversations/{c['id']}/messages", json={"content": "hi", "params": {"max_tokens": 4096}})
    error_of(r, 400, "invalid_value")


# ---------------------------------------------------------------------------- search


def test_search_finds_messages_and_titles(http):
    c = new_conversation(http, title="Holiday plans")
    send(http, c["id"], "我想去杭州看西湖 and the Leifeng Pagoda")
    for query in ("西湖", "leifeng pagoda", "Holiday"):
        hits = http.get("/api/conversations", params={"q": query}).json()["data"]
        assert any(h["id"] == c["id"] for h in hits), query
    hit = next(h for h in http.get("/api/conversations", params={"q": "西湖"}).json()["data"] if h["id"] == c["id"])
    assert "西湖" in hit["match"]["snippet"]
    assert http.get("/api/conversations", params={"q": "zzz-not-there"}).json()["data"] == []
    assert http.get("/api/conversations", params={"q": '"unbalanced AND ('}).status_code == 200


# ---------------------------------------------------------------------------- feedback


def test_feedback_is_stored_with_the_message(http):
    c = new_conversation(http)
    send(http, c["id"], "rate me")
    reply = http.get(f"/api/conversations/{c['id']}").json()["messages"][1]
    r = http.put(f"/api/messages/{reply['id']}/feedback", json={"rating": -1, "comment": "too short"})
    assert r.status_code == 200 and r.json()["rating"] == -1
    http.put(f"/api/messages/{reply['id']}/feedback", json={"rating": 1})
    stored = http.get(f"/api/conversations/{c['id']}").json()["messages"][1]
    assert stored["feedback"] == {"rating": 1, "comment": ""}
    listed = http.get("/api/feedback").json()["data"]
    assert listed[0]["message_id"] == reply["id"] and listed[0]["model"] == SCRIPTED
    assert http.delete(f"/api/messages/{reply['id']}/feedback").status_code == 204
    assert http.get(f"/api/conversations/{c['id']}").json()["messages"][1]["feedback"] is None
    error_of(http.put(f"/api/messages/{reply['id']}/feedback", json={"rating": 5}), 422, "invalid_value")
    error_of(http.put("/api/messages/987654/feedback", json={"rating": 1}), 404, "not_found")


# ---------------------------------------------------------------------------- export / import


def test_export_markdown_and_json_then_import(http):
    c = new_conversation(http, title="Export me", system_prompt="Persona: pirate")
    send(http, c["id"], "Ahoy `code`")
    reply = http.get(f"/api/conversations/{c['id']}").json()["messages"][1]
    http.put(f"/api/messages/{reply['id']}/feedback", json={"rating": 1, "comment": "arr"})
    md = http.get(f"/api/conversations/{c['id']}/export", params={"format": "markdown"})
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert md.text.startswith("# Export me") and "Persona: pirate" in md.text and "Ahoy `code`" in md.text
    exported = http.get(f"/api/conversations/{c['id']}/export").json()
    assert exported["format"] == "aigc.conversation" and len(exported["messages"]) == 2
    r = http.post("/api/conversations/import", json=exported)
    assert r.status_code == 201
    imported = r.json()
    assert imported["id"] != c["id"] and imported["title"] == "Export me"
    assert [(m["role"], m["content"], m["feedback"]) for m in imported["messages"]] == [
        (m["role"], m["content"], m["feedback"]) for m in exported["messages"]]
    error_of(http.get(f"/api/conversations/{c['id']}/export", params={"format": "pdf"}), 422)


@pytest.mark.parametrize("body, where", [
    ([], "object"),
    ({"messages": "nope"}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ({"messages": [{"role": "user", "content": 5}]}, "content"),
    ({"format": "other", "messages": []}, "format"),
])
def test_import_rejects_what_is_not_a_conversation(http, body, where):
    assert where in error_of(http.post("/api/conversations/import", json=body), 422, "invalid_conversation")["message"]


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/conversations/424242"),
    ("GET", "/api/conversations/not-a-number"),
    ("PATCH", "/api/conversations/424242"),
    ("DELETE", "/api/conversations/424242"),
    ("GET", "/api/conversations/424242/export"),
    ("GET", "/api/conversations/424242/context"),
    ("POST", "/api/conversations/424242/messages"),
    ("POST", "/api/conversations/424242/regenerate"),
    ("POST", "/api/conversations/424242/stop"),
    ("DELETE", "/api/messages/424242/feedback"),
])
def test_unknown_ids_are_404(http, method, path):
    body = {"content": "hi"} if path.endswith("/messages") else {"title": "x"} if method == "PATCH" else None
    error_of(http.request(method, path, json=body), 404, "not_found")


def test_unknown_model_is_404(http):
    error_of(http.post("/api/conversations", json={"model": "no-such-model"}), 404, "model_not_found")
    c = new_conversation(http)
    error_of(http.post(f"/api/conversations/{c['id']}/messages", json={"content": "x", "model": "nope"}), 404)


def test_invalid_json_and_schema_are_422(http):
    c = new_conversation(http)
    for path in ("/api/conversations", f"/api/conversations/{c['id']}/messages", "/api/conversations/import",
                 "/api/templates", "/api/templates/poem/render"):
        error_of(http.post(path, content=b"{not json", headers={"content-type": "application/json"}), 422, "invalid_json")
    error_of(http.post(f"/api/conversations/{c['id']}/messages", json={}), 422, "missing_field")
    error_of(http.post(f"/api/conversations/{c['id']}/messages", json={"content": ""}), 422)
    error_of(http.post(f"/api/conversations/{c['id']}/messages", json={"content": "x", "params": {"temperature": 9}}), 422)
    error_of(http.patch(f"/api/conversations/{c['id']}", json={"title": "x" * 201}), 422)
    error_of(http.post("/api/conversations", json={"unknown_field": 1}), 422)


def test_oversized_bodies_are_413(http):
    big = b'{"content": "' + b"x" * (1 << 20) + b'"}'
    error_of(http.post("/api/conversations/import", content=big, headers={"content-type": "application/json"}), 413,
             "request_too_large")

    def chunks():  # no Content-Length: the limit counts the bytes as they come
        for _ in range(20):
            yield b"x" * 65536

    error_of(http.post("/api/conversations/import", content=chunks(), headers={"content-type": "application/json"}),
             413, "request_too_large")


def test_pages_are_served_without_any_cdn(http):
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("/static/app.css", "/static/js/app.js", "/static/js/markdown.js", "/static/favicon.svg"):
        assert http.get(asset).status_code == 200, asset
    assert "http://" not in page.text and "https://" not in page.text  # nothing loaded from elsewhere
