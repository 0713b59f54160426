"""Accounts through the real server: login, sessions, modes, API keys, limits, and isolation of
every /api resource between users (another user's resource is a 404, never a 403)."""

from __future__ import annotations

import time
from contextlib import closing

import httpx
import openai
import pytest
from app_harness import SCRIPTED, error_of, events_of, scripted_server

from aigc.accounts import UserStore
from aigc.store import Database
from figures import record

PASSWORD = "correct horse battery"


def _users(db_path) -> UserStore:
    return UserStore(Database(db_path if isinstance(db_path, str) else f"sqlite:///{db_path}"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def accounts(request, tmp_path_factory):
    """A server with three users, on SQLite and (when the tests have one) on PostgreSQL."""
    from database_harness import fresh_database

    with fresh_database(request.param, tmp_path_factory.mktemp("acc")) as url:
        users = _users(url)
        users.add("alice", PASSWORD, admin=True)
        users.add("bob", PASSWORD)
        users.add("王小明", PASSWORD)  # names in any script
        server, engine = scripted_server(url, rate_limit="1000/minute")
        yield server, users
        server.stop()


def login(server, name: str, password: str = PASSWORD) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=30)
    r = client.post("/api/auth/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie  # plain http here
    return client


def test_login_me_logout(accounts):
    server, _ = accounts
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        error_of(anon.get("/api/conversations"), 401, "missing_api_key")  # accounts exist: login needed
        error_of(anon.get("/api/auth/me"), 401, "login_required")
        assert anon.get("/").status_code == 200  # the page itself (with its login form) is public
        error_of(anon.post("/api/auth/login", json={"username": "alice", "password": "wrong password"}), 401,
                 "invalid_credentials")
        error_of(anon.post("/api/auth/login", json={"username": "nobody", "password": "wrong password"}), 401,
                 "invalid_credentials")  # the same answer: user names are not revealed
    with closing(login(server, "王小明")) as c:
        me = c.get("/api/auth/me").json()
        assert me["user"]["name"] == "王小明" and me["user"]["role"] == "user" and me["mode"] == "accounts"
        assert c.get("/api/conversations").status_code == 200
        assert c.post("/api/auth/logout").status_code == 204
        error_of(c.get("/api/conversations"), 401)  # the session is gone on the server too


def test_failed_logins_are_limited_per_account(accounts):
    server, users = accounts
    users.add("carol", PASSWORD)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for _ in range(5):
            error_of(c.post("/api/auth/login", json={"username": "carol", "password": "guess-guess"}), 401)
        r = c.post("/api/auth/login", json={"username": "carol", "password": PASSWORD})  # even the right one
        error_of(r, 429, "too_many_logins")
        assert int(r.headers["retry-after"]) > 0


def _make_everything(c: httpx.Client, server) -> dict:
    """One of every /api resource, owned by the client's user."""
    conv = c.post("/api/conversations", json={"title": "alice's secret"}).json()
    events = events_of(c.post(f"/api/conversations/{conv['id']}/messages", json={"content": "secret plan",
                                                                                 "params": {"max_tokens": 3}}))
    assert events[-1]["type"] == "done"
    detail = c.get(f"/api/conversations/{conv['id']}").json()
    user_msg, reply = detail["messages"][0], detail["messages"][1]
    assert c.put(f"/api/messages/{reply['id']}/feedback", json={"rating": 1}).status_code == 200
    template = c.post("/api/templates", json={"name": "Mine", "body": "Say {{ x }}",
                                              "fields": [{"name": "x", "label": "X"}]})
    assert template.status_code == 201, template.text
    kb = c.post("/api/knowledge-bases", json={"name": "alice's shop"}).json()
    up = c.post(f"/api/knowledge-bases/{kb['id']}/documents",
                files=[("files", ("rules.md", "# 退货\n\n七天无理由退货。".encode(), "text/markdown"))])
    doc = up.json()["data"][0]
    assert doc["status"] == "indexed", doc
    key = c.post("/api/keys", json={"name": "laptop"}).json()
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key["key"], max_retries=0)
    response = client.responses.create(model=SCRIPTED, input="hi", max_output_tokens=2)
    return {"conv": conv["id"], "user_msg": user_msg["id"], "reply": reply["id"], "template": template.json()["id"],
            "key": key["id"], "response": response.id, "api_key": key["key"], "kb": kb["id"], "doc": doc["id"]}


def test_every_resource_is_invisible_to_another_user(accounts):
    server, _ = accounts
    with closing(login(server, "alice")) as a, closing(login(server, "bob")) as b:
        ids = _make_everything(a, server)
        cid, mid, rid, tid = ids["conv"], ids["reply"], ids["user_msg"], ids["template"]
        attempts = [  # (method, path, json body) -- every verb on every resource type
            ("GET", f"/api/conversations/{cid}", None),
            ("PATCH", f"/api/conversations/{cid}", {"title": "mine now"}),
            ("DELETE", f"/api/conversations/{cid}", None),
            ("GET", f"/api/conversations/{cid}/export", None),
            ("GET", f"/api/conversations/{cid}/export?format=markdown", None),
            ("GET", f"/api/conversations/{cid}/context", None),
            ("POST", f"/api/conversations/{cid}/messages", {"content": "hello"}),
            ("POST", f"/api/conversations/{cid}/regenerate", {}),
            ("POST", f"/api/conversations/{cid}/messages/{rid}/edit", {"content": "changed"}),
            ("POST", f"/api/conversations/{cid}/stop", {}),
            ("PUT", f"/api/messages/{mid}/feedback", {"rating": -1}),
            ("DELETE", f"/api/messages/{mid}/feedback", None),
            ("GET", f"/api/templates/{tid}", None),
            ("PUT", f"/api/templates/{tid}", {"name": "Taken", "body": "x"}),
            ("DELETE", f"/api/templates/{tid}", None),
            ("POST", f"/api/templates/{tid}/render", {"values": {"x": "1"}}),
            ("POST", f"/api/templates/{tid}/run", {"values": {"x": "1"}}),
            ("GET", f"/api/templates/export?ids={tid}", None),
            ("DELETE", f"/api/keys/{ids['key']}", None),
            ("GET", f"/api/knowledge-bases/{ids['kb']}", None),
            ("DELETE", f"/api/knowledge-bases/{ids['kb']}", None),
            ("GET", f"/api/knowledge-bases/{ids['kb']}/documents", None),
            ("GET", f"/api/knowledge-bases/{ids['kb']}/documents/{ids['doc']}", None),
            ("DELETE", f"/api/knowledge-bases/{ids['kb']}/documents/{ids['doc']}", None),
            ("POST", f"/api/knowledge-bases/{ids['kb']}/search", {"query": "退货"}),
            ("POST", f"/api/knowledge-bases/{ids['kb']}/documents", {}),
        ]
        for method, path, body in attempts:
            r = b.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
        record("isolation", resource_verbs_tried_as_another_user=len(attempts))
        # Lists and searches do not show it either.
        assert all(c["id"] != cid for c in b.get("/api/conversations").json()["data"])
        assert b.get("/api/conversations", params={"q": "secret"}).json()["data"] == []
        assert b.get("/api/feedback").json()["data"] == []
        assert all(t["id"] != tid for t in b.get("/api/templates").json()["data"])
        assert b.get("/api/keys").json()["data"] == []
        assert b.get("/api/knowledge-bases").json()["data"] == []
        # The OpenAI routes' stored responses belong to the key's user.
        bob_key = b.post("/api/keys", json={}).json()["key"]
        bob = openai.OpenAI(base_url=server.url + "/v1", api_key=bob_key, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(ids["response"])
        with pytest.raises(openai.NotFoundError):
            bob.responses.create(model=SCRIPTED, input="more", previous_response_id=ids["response"])
        # Nothing of alice's changed.
        detail = a.get(f"/api/conversations/{cid}").json()
        assert detail["title"] == "alice's secret" and len(detail["messages"]) == 2
        assert detail["messages"][1]["feedback"]["rating"] == 1
        assert a.get(f"/api/templates/{tid}").json()["name"]["en"] == "Mine"
        alice = openai.OpenAI(base_url=server.url + "/v1", api_key=ids["api_key"], max_retries=0)
        assert alice.responses.retrieve(ids["response"]).id == ids["response"]
        # An admin does not see other users' chats either (only their own).
        assert all(c["title"] != "alice's secret" for c in b.get("/api/conversations").json()["data"])


def test_api_keys_are_shown_once_revocable_and_record_last_use(accounts):
    server, users = accounts
    with closing(login(server, "bob")) as b:
        created = b.post("/api/keys", json={"name": "script"}).json()
        assert created["key"].startswith("aigc-") and created["prefix"] == created["key"][:11]
        listed = [k for k in b.get("/api/keys").json()["data"] if k["id"] == created["id"]][0]
        assert "key" not in listed and listed["last_used_at"] is None
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=created["key"], max_retries=0)
        assert client.chat.completions.create(model=SCRIPTED, messages=[{"role": "user", "content": "x"}],
                                              max_tokens=2).choices[0].message.content
        listed = [k for k in b.get("/api/keys").json()["data"] if k["id"] == created["id"]][0]
        assert listed["last_used_at"] is not None
        for _ in range(50):  # the usage row is written just after the answer went out
            usage = b.get("/api/usage").json()["data"]
            if any(u["key_id"] == created["id"] and u["completion_tokens"] == 2 for u in usage):
                break
            time.sleep(0.05)
        assert any(u["key_id"] == created["id"] and u["completion_tokens"] == 2 for u in usage), usage
        assert b.delete(f"/api/keys/{created['id']}").status_code == 204
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="aigc-made-up", max_retries=0).models.list()


def test_rate_limit_and_token_quota_answer_429_with_headers(tmp_path):
    db_path = tmp_path / "app.db"
    users = _users(db_path)
    users.add("dora", PASSWORD)
    users.add("erin", PASSWORD)
    users.set_limits("erin", token_quota="5/day")
    server, _ = scripted_server(db_path, rate_limit="3/minute", token_quota="1000/day")
    try:
        dora_key, _ = users.create_key(users.by_name("dora").id)
        dora = openai.OpenAI(base_url=server.url + "/v1", api_key=dora_key, max_retries=0)
        first = dora.models.with_raw_response.list()
        assert first.headers["x-ratelimit-limit-requests"] == "3"
        assert first.headers["x-ratelimit-remaining-requests"] == "2"
        assert first.headers["x-ratelimit-limit-tokens"] == "1000"
        dora.models.list()
        dora.models.list()
        with pytest.raises(openai.RateLimitError) as e:
            dora.models.list()
        assert e.value.code == "rate_limit_exceeded" and int(e.value.response.headers["retry-after"]) >= 1

        erin_key, _ = users.create_key(users.by_name("erin").id)
        erin = openai.OpenAI(base_url=server.url + "/v1", api_key=erin_key, max_retries=0)
        erin.chat.completions.create(model=SCRIPTED, messages=[{"role": "user", "content": "x"}], max_tokens=3)
        from aigc.accounts.limits import UsageBook

        book = UsageBook(Database(f"sqlite:///{db_path}"))
        for _ in range(50):  # the usage row is written just after the answer went out
            if book.tokens_since(users.by_name("erin").id, None, 86400) > 0:
                break
            time.sleep(0.05)
        with pytest.raises(openai.RateLimitError) as e:  # her own quota (5/day) beats the server's 1000
            erin.chat.completions.create(model=SCRIPTED, messages=[{"role": "user", "content": "x"}], max_tokens=3)
        assert e.value.code == "insufficient_quota"
        assert e.value.response.headers["x-ratelimit-remaining-tokens"] == "0"
    finally:
        server.stop()


def test_single_user_mode_until_the_first_admin_who_inherits_the_room(tmp_path):
    db_path = tmp_path / "app.db"
    server, _ = scripted_server(db_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.get("/api/auth/me").json()["mode"] == "single-user"  # no login on loopback
            old = c.post("/api/conversations", json={"title": "before accounts"}).json()
            _users(db_path).add("root", PASSWORD, admin=True)
            time.sleep(2.1)  # the gate re-checks for accounts every 2 s
            error_of(c.get("/api/conversations"), 401)
        with closing(login(server, "root")) as r:
            assert [x["id"] for x in r.get("/api/conversations").json()["data"]] == [old["id"]]
    finally:
        server.stop()


def test_cross_site_writes_and_foreign_hosts_are_refused(accounts):
    server, _ = accounts
    with closing(login(server, "alice")) as a:
        r = a.post("/api/conversations", json={"title": "x"}, headers={"Origin": "https://evil.example"})
        error_of(r, 403, "cross_site_request")
        r = a.post("/api/conversations", content=b'{"title": "x"}', headers={"Content-Type": "text/plain"})
        error_of(r, 415, "unsupported_media_type")
        ok = a.post("/api/conversations", json={"title": "x"}, headers={"Origin": server.url})
        assert ok.status_code == 201
        r = a.get("/api/conversations", headers={"Host": "attacker.example"})  # DNS rebinding
        error_of(r, 400, "invalid_host")
        assert a.get("/api/conversations", headers={"Host": "localhost:1234"}).status_code == 200
