"""What an attacker tried, kept as regression tests: hostile templates, oversized bodies, races,
odd bytes in ids and queries, unvalidated imports, forged log lines, headers. None may end in a
5xx, a frozen server or a wrong answer."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time

import httpx
import pytest
from app_harness import SCRIPTED, error_of, events_of, scripted_server

from aigc.apps.chat.conversations import ConversationStore
from aigc.store import Database
from figures import record


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "app.db"
    server, _ = scripted_server(path)
    server.db_path = path
    yield server
    server.stop()


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def test_a_hostile_template_neither_freezes_the_server_nor_500s(http):
    started = time.monotonic()
    made = http.post("/api/templates", json={"name": "x", "body": "{{ (9 ** 10000000) % 7 }}"})
    assert made.status_code == 201 and time.monotonic() - started < 2  # nothing folded at compile time
    tid = made.json()["id"]
    assert http.get("/api/templates").status_code == 200 and time.monotonic() - started < 3
    error_of(http.post(f"/api/templates/{tid}/render", json={"values": {}}), 422, "invalid_template")
    loop = http.post("/api/templates", json={"name": "loop", "body": (
        "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}x")}).json()["id"]
    health: list[float] = []

    def poll() -> None:
        with httpx.Client(base_url=http.base_url, timeout=30) as c:
            for _ in range(10):
                t = time.monotonic()
                c.get("/health")
                health.append(time.monotonic() - t)
                time.sleep(0.1)

    watcher = threading.Thread(target=poll)
    watcher.start()
    r = http.post(f"/api/templates/{loop}/render", json={"values": {}})
    watcher.join()
    error_of(r, 422, "invalid_template")
    assert "2 s" in r.json()["error"]["message"]
    assert max(health) < 1.0, health  # the event loop kept answering during the render
    for body in ("{{ 10**5000 }}", "{{ range(1000000)|length }}", "{{ '%s'|format(range) }}"):
        tid = http.post("/api/templates", json={"name": "x", "body": body}).json()["id"]
        err = error_of(http.post(f"/api/templates/{tid}/render", json={"values": {}}), 422)
        assert "0x" not in err["message"]


def test_bodies_over_the_limit_are_413_on_the_model_routes_too(http):
    big = b'{"model": "scripted", "messages": [{"role": "user", "content": "' + b"x" * (9 << 20) + b'"}]}'
    for path in ("/v1/chat/completions", "/tokenize"):
        error_of(http.post(path, content=big, headers={"content-type": "application/json"}), 413,
                 "request_too_large")
    assert http.get("/health").status_code == 200


def test_writes_from_other_sites_and_as_plain_text_are_refused_without_accounts(http):
    r = http.post("/api/conversations", content=b'{"title":"x"}', headers={"content-type": "text/plain"})
    error_of(r, 415)
    r = http.post("/api/conversations", json={"title": "x"}, headers={"origin": "https://evil.example"})
    error_of(r, 403, "cross_site_request")


def _race(n: int, *calls) -> list[int]:
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        statuses = []
        for _ in range(n):
            statuses += [f.result() for f in [pool.submit(c) for c in calls]]
    return statuses


def test_races_end_in_one_of_the_serial_outcomes_never_a_500(server, http):
    url = server.url

    def call(method: str, path: str, body=None):
        def go() -> int:
            with httpx.Client(base_url=url, timeout=60) as c:
                return c.request(method, path, json=body).status_code
        return go

    statuses = []
    for _ in range(15):  # delete racing a rename
        cid = http.post("/api/conversations", json={"title": "t"}).json()["id"]
        statuses += _race(1, call("DELETE", f"/api/conversations/{cid}"),
                          call("PATCH", f"/api/conversations/{cid}", {"title": "renamed"}))
    for _ in range(10):  # three first ratings at once, and a rating racing the delete
        cid = http.post("/api/conversations", json={}).json()["id"]
        events_of(http.post(f"/api/conversations/{cid}/messages", json={"content": "hi", "params": {"max_tokens": 2}}))
        mid = http.get(f"/api/conversations/{cid}").json()["messages"][1]["id"]
        statuses += _race(1, *(call("PUT", f"/api/messages/{mid}/feedback", {"rating": r}) for r in (1, -1, 1)))
        assert http.get(f"/api/conversations/{cid}").json()["messages"][1]["feedback"]["rating"] in (1, -1)
        statuses += _race(1, call("PUT", f"/api/messages/{mid}/feedback", {"rating": 1}),
                          call("DELETE", f"/api/conversations/{cid}"))
    assert all(s < 500 for s in statuses), statuses
    assert set(statuses) <= {200, 204, 404, 409}
    record("app_races", racing_requests=len(statuses), outcomes=str(sorted(set(statuses))))


def test_odd_bytes_in_ids_and_queries_are_4xx(http):
    for path in ("/api/conversations/%C2%B9", "/api/conversations/%D9%A3", "/api/templates/user-99999999999999999999999",
                 "/api/messages/%C2%B9/feedback"):
        r = http.get(path) if "feedback" not in path else http.delete(path)
        assert r.status_code == 404, (path, r.text)
    for query in ("q=ab%00", "q=%ED%B3%BF", "q=%FF%FE"):
        error_of(http.get(f"/api/conversations?{query}"), 400)
    error_of(http.get("/api/conversations/%ED%B3%BF"), 400)
    r = http.post("/api/conversations", content=b'{"title": "a\\u0000b"}', headers={"content-type": "application/json"})
    error_of(r, 400)
    nested = b"[" * 100_000 + b"]" * 100_000
    r = http.post("/api/conversations/import", content=nested, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    r = http.post("/v1/chat/completions", content=b'{"model": "scripted", "messages": ' + nested + b"}",
                  headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    r = http.post("/v1/chat/completions", json={"model": SCRIPTED, "messages": [{"role": "user", "content": "x"}],
                                                "top_k": 1e20})
    error_of(r, 400)


def test_imports_are_validated_like_requests(server, http):
    def conversation(**changes):
        base = {"format": "aigc.conversation", "title": "t", "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "tokens": 2}]}
        base.update(changes)
        return base

    error_of(http.post("/api/conversations/import", json=conversation(params={"temperature": 99})), 422)
    error_of(http.post("/api/conversations/import", json=conversation(params={"max_tokens": "abc"})), 422)
    bad_tokens = conversation()
    bad_tokens["messages"][1]["tokens"] = 2**63
    error_of(http.post("/api/conversations/import", json=bad_tokens), 422)
    ok = http.post("/api/conversations/import", json=conversation(params={"temperature": 0.3}))
    assert ok.status_code == 201 and ok.json()["params"] == {"temperature": 0.3}
    # A conversation stored with a bad value before imports were checked still answers.
    store = ConversationStore(Database(f"sqlite:///{server.db_path}"))
    legacy = store.create(params={"max_tokens": "abc", "temperature": 99})
    events = events_of(http.post(f"/api/conversations/{legacy['id']}/messages", json={"content": "hi"}))
    assert events[-1]["type"] == "done"
    assert http.get(f"/api/conversations/{legacy['id']}/context").status_code == 200


def test_log_lines_cannot_be_forged(http):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("aigc.server.requests")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        http.get("/api/conversations/7%0A2026-12-01 00:00:00 INFO FORGED")
        for _ in range(100):  # the line is written just after the answer went out
            if records:
                break
            time.sleep(0.02)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [r.getMessage() for r in records]
    assert lines and all("\n" not in line for line in lines)
    assert any("\\x0a" in line for line in lines)


def test_headers_docs_and_schema(http):
    page = http.get("/")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert http.get("/docs").status_code == 404 and http.get("/redoc").status_code == 404  # they need a CDN
    assert http.get("/openapi.json").status_code == 200  # open here: no accounts, loopback


def test_a_reply_lost_in_a_crash_leaves_no_two_user_turns_in_a_row(server, http):
    store = ConversationStore(Database(f"sqlite:///{server.db_path}"))
    c = store.create()
    store.add_message(c["id"], "user", "first question")  # the reply to it died with the server
    events_of(http.post(f"/api/conversations/{c['id']}/messages", json={"content": "again?",
                                                                       "params": {"max_tokens": 2}}))
    roles = [(m["role"], m["finish_reason"]) for m in http.get(f"/api/conversations/{c['id']}").json()["messages"]]
    assert [r for r, _ in roles] == ["user", "assistant", "user", "assistant"]
    assert roles[1] == ("assistant", "stopped")
    assert json.dumps(roles)


def test_editing_renaming_and_deleting_while_a_reply_streams(tmp_path):
    """Two clients act on one conversation while its reply streams: no 5xx, no orphaned rows, and
    the end state is one a serial order gives (deleted, or whole with alternating turns)."""
    import sqlite3

    path = tmp_path / "race.db"
    server, engine = scripted_server(path, delay=0.01)
    statuses: list[int] = []
    try:
        for round_ in range(6):
            with httpx.Client(base_url=server.url, timeout=60) as c:
                cid = c.post("/api/conversations", json={"title": "busy"}).json()["id"]
                first = c.post(f"/api/conversations/{cid}/messages", json={"content": "one",
                                                                          "params": {"max_tokens": 2}})
                mid = events_of(first)[0]["user_message"]["id"] if "user_message" in events_of(first)[0] else \
                    c.get(f"/api/conversations/{cid}").json()["messages"][0]["id"]

            def stream(cid: int = cid) -> int:
                with httpx.Client(base_url=server.url, timeout=60) as c:
                    r = c.post(f"/api/conversations/{cid}/messages", json={"content": "two",
                                                                          "params": {"max_tokens": 30}})
                    return r.status_code

            def other(method: str, path: str, body=None):
                def go() -> int:
                    time.sleep(0.05)
                    with httpx.Client(base_url=server.url, timeout=60) as c:
                        return c.request(method, path, json=body).status_code
                return go

            actions = [stream, other("PATCH", f"/api/conversations/{cid}", {"title": f"renamed {round_}"}),
                       other("POST", f"/api/conversations/{cid}/messages/{mid}/edit", {"content": "edited"})]
            if round_ % 2:
                actions.append(other("DELETE", f"/api/conversations/{cid}"))
            statuses += _race(1, *actions)
            with httpx.Client(base_url=server.url, timeout=60) as c:
                for _ in range(100):  # the streamed reply finishes (or was stopped by the delete)
                    r = c.get(f"/api/conversations/{cid}")
                    if r.status_code == 404 or not r.json()["generating"]:
                        break
                    time.sleep(0.05)
                if r.status_code == 200:
                    roles = [m["role"] for m in r.json()["messages"]]
                    assert roles == ["user", "assistant"] * (len(roles) // 2), roles
        assert all(s < 500 for s in statuses), statuses
        with sqlite3.connect(path) as db:
            orphans = db.execute("SELECT COUNT(*) FROM messages WHERE conversation_id NOT IN "
                                 "(SELECT id FROM conversations)").fetchone()[0]
            assert orphans == 0
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        record("app_concurrency_while_streaming", rounds=6, requests=len(statuses),
               outcomes=str(sorted(set(statuses))))
    finally:
        server.stop()


def test_a_lone_surrogate_in_chat_content_is_blamed_on_messages(http):
    r = http.post("/v1/chat/completions", content=b'{"model": "scripted", "messages": [{"role": "user", '
                  b'"content": "hi \\udcff"}]}', headers={"content-type": "application/json"})
    assert error_of(r, 400)["param"] == "messages"
