"""Branching conversations over the app's API: edits and regenerations keep their siblings, a
switch changes the branch on screen and what the model is sent, forks, export/import of the tree,
search over every branch, feedback per sibling."""

from __future__ import annotations

import httpx
import pytest
from app_harness import byte_tokenizer, error_of, events_of

FAST = {"max_tokens": 3, "temperature": 0}


def new_conversation(http: httpx.Client, **fields) -> dict:
    r = http.post("/api/conversations", json=fields)
    assert r.status_code == 201, r.text
    return r.json()


def send(http: httpx.Client, cid: int, content: str, params: dict | None = None) -> list[dict]:
    return events_of(http.post(f"/api/conversations/{cid}/messages", json={"content": content, "params": params or FAST}))


def regenerate(http: httpx.Client, cid: int, params: dict | None = None) -> list[dict]:
    return events_of(http.post(f"/api/conversations/{cid}/regenerate", json={"params": params or FAST}))


def edit(http: httpx.Client, cid: int, mid: int, content: str) -> list[dict]:
    return events_of(http.post(f"/api/conversations/{cid}/messages/{mid}/edit", json={"content": content, "params": FAST}))


def switch(http: httpx.Client, cid: int, mid: int) -> dict:
    r = http.post(f"/api/conversations/{cid}/messages/{mid}/switch")
    assert r.status_code == 200, r.text
    return r.json()


def path_of(http: httpx.Client, cid: int) -> list[dict]:
    return http.get(f"/api/conversations/{cid}").json()["messages"]


def last_prompt(engine) -> str:
    return byte_tokenizer().decode(engine.requests[-1].prompt_token_ids)


def test_regenerate_keeps_the_old_reply_as_a_sibling(http):
    c = new_conversation(http)
    send(http, c["id"], "one")
    question, first = path_of(http, c["id"])
    done = regenerate(http, c["id"], {"max_tokens": 2})[-1]["message"]
    assert done["parent_id"] == question["id"] and done["siblings"] == [first["id"], done["id"]]
    question_after, second = path_of(http, c["id"])
    assert question_after["id"] == question["id"] and second["id"] == done["id"] and second["content"] == "word0 word1 "
    assert second["siblings"] == [first["id"], second["id"]] and question_after["siblings"] == [question["id"]]
    # The old reply is still there, a sibling of the new one.
    shown = switch(http, c["id"], first["id"])
    assert [m["id"] for m in shown["messages"]] == [question["id"], first["id"]]
    assert [m["id"] for m in path_of(http, c["id"])] == [question["id"], first["id"]]


def test_edit_adds_a_sibling_and_the_old_branch_stays(http):
    c = new_conversation(http)
    send(http, c["id"], "first question")
    send(http, c["id"], "second question")
    old = path_of(http, c["id"])
    events = edit(http, c["id"], old[0]["id"], "first, edited")
    edited = events[0]["user_message"]
    assert edited["id"] != old[0]["id"] and edited["content"] == "first, edited"
    assert edited["parent_id"] is None and edited["siblings"] == [old[0]["id"], edited["id"]]
    now = path_of(http, c["id"])
    assert [(m["role"], m["content"]) for m in now] == [("user", "first, edited"), ("assistant", "word0 word1 word2 ")]
    assert now[0]["siblings"] == [old[0]["id"], edited["id"]] and now[1]["parent_id"] == edited["id"]
    # Back to the first version: its whole branch, down to its newest leaf.
    assert [m["id"] for m in switch(http, c["id"], old[0]["id"])["messages"]] == [m["id"] for m in old]
    # Editing a message deeper down keeps the path above it.
    edit(http, c["id"], old[2]["id"], "second, edited")
    assert [m["content"] for m in path_of(http, c["id"])][:3] == ["first question", "word0 word1 word2 ", "second, edited"]


def test_switching_branches_changes_the_prompt(http, app_server):
    _, engine = app_server
    c = new_conversation(http, system_prompt="Be brief.")
    send(http, c["id"], "alpha question")
    alpha = path_of(http, c["id"])[0]
    beta = edit(http, c["id"], alpha["id"], "beta question")[0]["user_message"]
    assert "beta question" in last_prompt(engine) and "alpha question" not in last_prompt(engine)
    send(http, c["id"], "follow up on beta")
    prompt = last_prompt(engine)
    assert "beta question" in prompt and "alpha question" not in prompt

    switch(http, c["id"], alpha["id"])
    send(http, c["id"], "follow up on alpha")
    prompt = last_prompt(engine)
    assert "Be brief." in prompt and "alpha question" in prompt and "follow up on alpha" in prompt
    assert "beta" not in prompt
    # The meter measures the path on screen too.
    assert http.get(f"/api/conversations/{c['id']}/context").json()["used_tokens"] > 0

    shown = switch(http, c["id"], beta["id"])
    assert [m["content"] for m in shown["messages"] if m["role"] == "user"] == ["beta question", "follow up on beta"]
    regenerate(http, c["id"])
    prompt = last_prompt(engine)
    assert "follow up on beta" in prompt and "alpha" not in prompt


def test_fork_starts_a_new_conversation_with_the_path(http):
    c = new_conversation(http, title="Trip", system_prompt="Be a guide.", params={"temperature": 0.5})
    send(http, c["id"], "where to go?")
    send(http, c["id"], "and then?")
    path = path_of(http, c["id"])
    http.put(f"/api/messages/{path[1]['id']}/feedback", json={"rating": 1})
    r = http.post(f"/api/conversations/{c['id']}/messages/{path[1]['id']}/fork")
    assert r.status_code == 201, r.text
    fork = r.json()
    assert fork["id"] != c["id"] and fork["title"] == "Trip (fork)" and fork["system_prompt"] == "Be a guide."
    assert fork["params"] == http.get(f"/api/conversations/{c['id']}").json()["params"]
    assert [(m["role"], m["content"]) for m in fork["messages"]] == [(m["role"], m["content"]) for m in path[:2]]
    assert fork["messages"][1]["parent_id"] == fork["messages"][0]["id"] and fork["messages"][1]["feedback"] is None
    assert not {m["id"] for m in fork["messages"]} & {m["id"] for m in path}
    assert [m["id"] for m in path_of(http, c["id"])] == [m["id"] for m in path]  # the original is unchanged
    send(http, fork["id"], "somewhere else")
    assert len(path_of(http, fork["id"])) == 4 and len(path_of(http, c["id"])) == 4
    # Someone else's message, or one of another conversation, is not found.
    error_of(http.post(f"/api/conversations/{fork['id']}/messages/{path[0]['id']}/fork"), 404, "not_found")
    error_of(http.post(f"/api/conversations/{fork['id']}/messages/{path[0]['id']}/switch"), 404, "not_found")


def test_forks_get_titles_of_their_own(http):
    """A fork's title says it is one, so the sidebar never shows two of the same; a fork of a fork
    or a second fork is numbered instead of stacking suffixes."""
    c = new_conversation(http, title="Journey")
    send(http, c["id"], "where to go?")

    def fork_of(cid: int) -> dict:
        r = http.post(f"/api/conversations/{cid}/messages/{path_of(http, cid)[0]['id']}/fork")
        assert r.status_code == 201, r.text
        return r.json()

    one = fork_of(c["id"])
    assert one["title"] == "Journey (fork)"
    assert fork_of(c["id"])["title"] == "Journey (fork 2)"
    assert fork_of(one["id"])["title"] == "Journey (fork 3)"  # not "(fork) (fork)"
    titles = [x["title"] for x in http.get("/api/conversations").json()["data"] if x["title"].startswith("Journey")]
    assert len(titles) == len(set(titles)) == 4
    http.delete(f"/api/conversations/{one['id']}")
    assert fork_of(c["id"])["title"] == "Journey (fork)"  # a free title again
    # An untitled conversation's fork is named after its first question; a long title still fits.
    untitled = new_conversation(http)
    send(http, untitled["id"], "what is a fork?")
    http.patch(f"/api/conversations/{untitled['id']}", json={"title": ""})
    assert fork_of(untitled["id"])["title"] == "what is a fork? (fork)"
    long = new_conversation(http, title="x" * 200)
    send(http, long["id"], "hi")
    titled = fork_of(long["id"])["title"]
    assert len(titled) <= 200 and titled.endswith("… (fork)")
    assert http.get(f"/api/conversations/{c['id']}").json()["title"] == "Journey"


def test_export_and_import_keep_the_tree(http):
    c = new_conversation(http, title="Tree")
    send(http, c["id"], "apple question")
    apple, reply = path_of(http, c["id"])
    regenerate(http, c["id"], {"max_tokens": 2})
    http.put(f"/api/messages/{reply['id']}/feedback", json={"rating": -1, "comment": "old one"})
    edit(http, c["id"], apple["id"], "banana question")
    switch(http, c["id"], reply["id"])  # the branch on screen is the first one, not the newest

    exported = http.get(f"/api/conversations/{c['id']}/export").json()
    assert exported["version"] == 2
    assert [(m["role"], m["content"][:6], m["parent"]) for m in exported["messages"]] == [
        ("user", "apple ", None), ("assistant", "word0 ", 0), ("assistant", "word0 ", 0),
        ("user", "banana", None), ("assistant", "word0 ", 3)]
    assert exported["active_root"] == 0 and [m["active_child"] for m in exported["messages"]] == [1, None, None, 4, None]
    assert exported["messages"][1]["feedback"] == {"rating": -1, "comment": "old one"}
    md = http.get(f"/api/conversations/{c['id']}/export", params={"format": "markdown"}).text
    assert "apple question" in md and "banana" not in md and md.count("## Assistant") == 1  # the active path

    r = http.post("/api/conversations/import", json=exported)
    assert r.status_code == 201, r.text
    imported = r.json()
    assert [m["content"] for m in imported["messages"]] == ["apple question", "word0 word1 word2 "]
    assert imported["messages"][0]["siblings"][0] == imported["messages"][0]["id"]
    assert len(imported["messages"][0]["siblings"]) == 2 and len(imported["messages"][1]["siblings"]) == 2
    again = http.get(f"/api/conversations/{imported['id']}/export").json()
    keys = ("role", "content", "parent", "active_child", "feedback", "finish_reason")
    assert [{k: m[k] for k in keys} for m in again["messages"]] == [{k: m[k] for k in keys} for m in exported["messages"]]
    assert again["active_root"] == 0
    banana = imported["messages"][0]["siblings"][1]
    assert [m["content"] for m in switch(http, imported["id"], banana)["messages"]][0] == "banana question"


def test_import_of_a_linear_file_and_bad_trees(http):
    linear = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}  # version 1
    imported = http.post("/api/conversations/import", json=linear).json()
    assert imported["messages"][1]["parent_id"] == imported["messages"][0]["id"]
    assert imported["active_root_id"] is None  # null pointers: the newest, here the only, message
    for body, where in [
        ({"messages": [{"role": "user", "content": "q", "parent": 0}]}, "messages[0].parent"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "parent": 1}]},
         "messages[1].parent"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "parent": "0"}]},
         "messages[1].parent"),
        ({"messages": [{"role": "user", "content": "q"}], "active_root": 5}, "active_root"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "a"}], "active_root": 1},
         "active_root"),
        ({"messages": [{"role": "user", "content": "q", "active_child": 0}]}, "messages[0].active_child"),
        ({"messages": [{"role": "user", "content": "q", "active_child": 1},
                       {"role": "assistant", "content": "a", "parent": None}]}, "messages[0].active_child"),
    ]:
        assert where in error_of(http.post("/api/conversations/import", json=body), 422, "invalid_conversation")["message"]


def test_search_finds_text_in_a_branch_not_on_screen(http):
    c = new_conversation(http, title="Animals")
    send(http, c["id"], "tell me about the okapi-zebra")
    hidden = path_of(http, c["id"])[0]
    edit(http, c["id"], hidden["id"], "tell me about giraffes")
    assert all("okapi" not in m["content"] for m in path_of(http, c["id"]))
    hits = http.get("/api/conversations", params={"q": "okapi-zebra"}).json()["data"]
    hit = next(h for h in hits if h["id"] == c["id"])
    assert hit["match"]["message_id"] == hidden["id"] and "okapi-zebra" in hit["match"]["snippet"]
    assert switch(http, c["id"], hit["match"]["message_id"])["messages"][0]["content"] == "tell me about the okapi-zebra"


def test_feedback_stays_with_each_sibling(http):
    c = new_conversation(http)
    send(http, c["id"], "rate both")
    first = path_of(http, c["id"])[1]
    second = regenerate(http, c["id"], {"max_tokens": 2})[-1]["message"]
    assert http.put(f"/api/messages/{first['id']}/feedback", json={"rating": 1, "comment": "better"}).status_code == 200
    assert http.put(f"/api/messages/{second['id']}/feedback", json={"rating": -1}).status_code == 200
    assert path_of(http, c["id"])[1]["feedback"] == {"rating": -1, "comment": ""}
    assert switch(http, c["id"], first["id"])["messages"][1]["feedback"] == {"rating": 1, "comment": "better"}
    rated = {f["message_id"]: f["rating"] for f in http.get("/api/feedback").json()["data"]}
    assert rated[first["id"]] == 1 and rated[second["id"]] == -1


def test_switch_while_a_reply_runs_is_409(http, app_server):
    _, engine = app_server
    engine.delay = 0.05
    c = new_conversation(http)
    send(http, c["id"], "q", {"max_tokens": 1})
    question = path_of(http, c["id"])[0]
    with http.stream("POST", f"/api/conversations/{c['id']}/messages",
                     json={"content": "long", "params": {"max_tokens": 200}}) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                error_of(http.post(f"/api/conversations/{c['id']}/messages/{question['id']}/switch"), 409,
                         "reply_in_progress")
                http.post(f"/api/conversations/{c['id']}/stop")
                break


@pytest.mark.parametrize("path", [
    "/api/conversations/424242/messages/1/switch",
    "/api/conversations/424242/messages/1/fork",
    "/api/conversations/1/messages/not-a-number/switch",
    "/api/conversations/not-a-number/messages/1/fork",
])
def test_unknown_ids_are_404(http, path):
    error_of(http.post(path), 404, "not_found")
