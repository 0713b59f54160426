"""Customer service through the real server: support sites, the widget's API with per-site CORS,
grounded visitor conversations with the site's persona and rules, and the hand-off to staff
(asked for, or on no source), with the queue's access rules."""

from __future__ import annotations

import sys
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from app_harness import error_of, events_of, scripted_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "knowledge"))

from corpus import RETURNS_MD, SHIPPING_HTML  # noqa: E402

from aigc.accounts import UserStore  # noqa: E402
from aigc.apps.support.desk import asks_for_person  # noqa: E402
from aigc.apps.support.sites import SupportError, normalize_origin  # noqa: E402
from aigc.store import Database  # noqa: E402

SHOP = "http://shop.example:8080"
PASSWORD = "correct horse battery"


def _prompt(engine) -> str:
    from server_harness import byte_tokenizer

    return byte_tokenizer().decode(engine.requests[-1].prompt_token_ids)


@pytest.fixture(scope="module")
def site(app_server):
    server, _ = app_server
    with httpx.Client(base_url=server.url, timeout=60) as http:
        kid = http.post("/api/knowledge-bases", json={"name": "shop rules"}).json()["id"]
        r = http.post(f"/api/knowledge-bases/{kid}/documents", files=[
            ("files", ("returns.md", RETURNS_MD, "text/markdown")),
            ("files", ("shipping.html", SHIPPING_HTML, "text/html"))])
        assert all(d["status"] == "indexed" for d in r.json()["data"]), r.text
        r = http.post("/api/support/sites", json={
            "name": "小店客服", "origins": ["http://Shop.example:8080/"], "knowledge_base_ids": [kid],
            "persona": "你是“小店”的客服小美，说话温柔。", "rules": "不要承诺当天发货\nNever promise free returns"})
        assert r.status_code == 201, r.text
        return r.json()


def widget(server, key: str, origin: str | None = SHOP, token: str | None = None) -> httpx.Client:
    headers = {"Origin": origin} if origin else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=f"{server.url}/widget/v1/sites/{key}", headers=headers, timeout=60)


def open_visitor(server, key: str) -> tuple[int, str]:
    """A new visitor of the site, as the widget starts one: (conversation id, visitor token)."""
    with closing(widget(server, key)) as w:
        opened = w.post("/conversations").json()
    return opened["conversation_id"], opened["token"]


def test_sites_are_validated_and_carry_their_embed_code(app_server, http, site):
    assert site["origins"] == [SHOP]  # normalised as browsers send Origin
    assert site["public_key"].startswith("site_")
    assert '/widget.js" data-site="' + site["public_key"] in site["embed_code"]
    e = error_of(http.post("/api/support/sites", json={"name": "x", "origins": ["shop.example/path"]}), 400)
    assert e["param"] == "origins"
    error_of(http.post("/api/support/sites", json={"name": "x", "knowledge_base_ids": [987654]}), 404)
    error_of(http.post("/api/support/sites", json={"origins": [SHOP]}), 422)
    error_of(http.post("/api/support/sites", json={"name": "x", "language": "fr"}), 422)
    assert [s["id"] for s in http.get("/api/support/sites").json()["data"]] == [site["id"]]
    r = http.patch(f"/api/support/sites/{site['id']}", json={"greeting": "欢迎光临！"})
    assert r.json()["greeting"] == "欢迎光临！" and r.json()["origins"] == [SHOP]
    with pytest.raises(SupportError):
        normalize_origin("ftp://shop.example")
    assert normalize_origin("HTTPS://Shop.Example:443") == "https://shop.example"


def test_widget_cors_is_scoped_to_the_site(app_server, site):
    server, _ = app_server
    script = httpx.get(f"{server.url}/widget.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cross-origin-resource-policy"] == "cross-origin"
    key = site["public_key"]
    pre = httpx.options(f"{server.url}/widget/v1/sites/{key}/conversations", headers={
        "Origin": SHOP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == SHOP
    assert "authorization" in pre.headers["access-control-allow-headers"]
    evil = httpx.options(f"{server.url}/widget/v1/sites/{key}/conversations", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
    with closing(widget(server, key, origin="https://evil.example")) as w:
        error_of(w.post("/conversations"), 403, "origin_not_allowed")
    with closing(widget(server, key, origin=None)) as w:
        error_of(w.get(f"{server.url}/widget/v1/sites/{key}"), 403, "origin_not_allowed")
    with closing(widget(server, "site_nope")) as w:
        error_of(w.get(f"{server.url}/widget/v1/sites/site_nope"), 404, "unknown_site")
    with closing(widget(server, key)) as w:
        info = w.get(f"{server.url}/widget/v1/sites/{key}")
        assert info.status_code == 200 and info.headers["access-control-allow-origin"] == SHOP
        assert info.json()["name"] == "小店客服"


def test_a_visitor_gets_grounded_answers_and_a_person_on_request(app_server, http, site):
    server, engine = app_server
    key = site["public_key"]
    cid, token = open_visitor(server, key)
    with closing(widget(server, key, token=token)) as w:
        events = events_of(w.post(f"/conversations/{cid}/messages", json={"content": "退货政策是什么？"}))
        done = events[-1]
        assert done["type"] == "done" and done["message"]["sources"][0]["document"]["filename"] == "returns.md"
        prompt = _prompt(engine)
        assert "客服小美" in prompt and "不要承诺当天发货" in prompt and "不要承诺资料里没有写明" in prompt
        assert "7天内可以无理由退货" in prompt  # the source went in
        # Not in the owner's own chat list, and another visitor's token opens nothing.
        assert cid not in [c["id"] for c in http.get("/api/conversations").json()["data"]]
        with closing(widget(server, key, token="visitor_forged")) as other:
            error_of(other.get(f"/conversations/{cid}"), 404)
        with closing(widget(server, key)) as no_token:
            error_of(no_token.get(f"/conversations/{cid}"), 401, "missing_token")

        asked = events_of(w.post(f"/conversations/{cid}/messages", json={"content": "转人工"}))[-1]["message"]
        assert asked["finish_reason"] == "handoff" and "人工客服" in asked["content"]
        state = w.get(f"/conversations/{cid}").json()
        assert state["handoff"] == "waiting"
        queue = http.get("/api/support/queue").json()
        assert queue["waiting"] >= 1
        row = next(q for q in queue["data"] if q["id"] == cid)
        assert row["site_name"] == "小店客服" and row["handoff_reason"] == "asked"

        before = len(engine.requests)
        held = events_of(w.post(f"/conversations/{cid}/messages", json={"content": "我的订单还没到"}))
        assert held[-1] == {"type": "done", "message": None, "handoff": "waiting"}
        assert len(engine.requests) == before  # the assistant stays silent while a person is coming
        last_seen = held[0]["user_message"]["id"]

        r = http.post(f"/api/support/conversations/{cid}/messages", json={"content": "您好，我是客服阿明，马上帮您查。"})
        assert r.status_code == 201 and r.json()["author"]
        news = w.get(f"/conversations/{cid}", params={"after": last_seen}).json()
        assert news["handoff"] == "active"
        assert [(m["role"], m["staff"], m["content"]) for m in news["messages"]] == [
            ("assistant", True, "您好，我是客服阿明，马上帮您查。")]
        transcript = http.get(f"/api/support/conversations/{cid}").json()
        assert [m["role"] for m in transcript["messages"]][-3:] == ["assistant", "user", "assistant"]

        assert http.post(f"/api/support/conversations/{cid}/state", json={"action": "resolve"}).json()["handoff"] \
            == "resolved"
        again = events_of(w.post(f"/conversations/{cid}/messages", json={"content": "那运费呢？"}))
        assert again[-1]["message"]["finish_reason"] != "handoff" and len(engine.requests) == before + 1
        error_of(http.post(f"/api/support/conversations/{cid}/state", json={"action": "explode"}), 422)


def test_no_source_hands_off_and_visitors_are_rate_limited(app_server, http, site):
    server, engine = app_server
    key = site["public_key"]
    cid, token = open_visitor(server, key)
    with closing(widget(server, key, token=token)) as w:
        before = len(engine.requests)
        reply = events_of(w.post(f"/conversations/{cid}/messages",
                                 json={"content": "What is the capital of France?"}))[-1]["message"]
        assert reply["finish_reason"] == "handoff" and "person" in reply["content"]
        assert len(engine.requests) == before
        assert w.get(f"/conversations/{cid}").json()["handoff"] == "waiting"
        assert next(q for q in http.get("/api/support/queue").json()["data"] if q["id"] == cid)[
            "handoff_reason"] == "no_source"
        codes = [w.post(f"/conversations/{cid}/messages", json={"content": f"hello {i}"}).status_code
                 for i in range(25)]
        assert 429 in codes and codes[0] == 200
        error_of(w.post(f"/conversations/{cid}/messages", json={"content": ""}), 422)


def test_asking_for_a_person_is_recognised_in_both_languages():
    for text in ("转人工", "我要人工客服", "人工", "Talk to a person please", "can I speak with a human agent?",
                 "real person"):
        assert asks_for_person(text), text
    for text in ("退货政策是什么？", "人工智能是什么？", "What is your return policy?",
                 "I would like to talk to a person about " + "x" * 80):
        assert not asks_for_person(text), text


def test_the_queue_is_for_staff_and_the_sites_owner(tmp_path):
    url = f"sqlite:///{tmp_path}/support.db"
    users = UserStore(Database(url))
    users.add("owner", PASSWORD, admin=True)
    users.add("agent", PASSWORD, staff=True)
    users.add("stranger", PASSWORD)
    server, _ = scripted_server(url)
    try:
        def login(name: str) -> httpx.Client:
            c = httpx.Client(base_url=server.url, timeout=30)
            assert c.post("/api/auth/login", json={"username": name, "password": PASSWORD}).status_code == 200
            return c

        with closing(login("owner")) as owner, closing(login("agent")) as agent, \
                closing(login("stranger")) as stranger:
            s = owner.post("/api/support/sites", json={"name": "shop", "origins": [SHOP]}).json()
            cid, token = open_visitor(server, s["public_key"])
            with closing(widget(server, s["public_key"], token=token)) as w:
                events_of(w.post(f"/conversations/{cid}/messages", json={"content": "talk to a person"}))
            assert [q["id"] for q in agent.get("/api/support/queue").json()["data"]] == [cid]
            assert stranger.get("/api/support/queue").json()["data"] == []
            error_of(stranger.get(f"/api/support/conversations/{cid}"), 404)
            error_of(stranger.post(f"/api/support/conversations/{cid}/messages", json={"content": "hi"}), 404)
            error_of(stranger.get(f"/api/support/sites/{s['id']}"), 404)  # sites are their owner's
            assert agent.post(f"/api/support/conversations/{cid}/messages", json={"content": "I'm here"}).json()[
                "author"] == "agent"
            assert agent.get(f"/api/support/conversations/{cid}").json()["agent_id"] is not None
            assert owner.delete(f"/api/support/sites/{s['id']}").status_code == 204
            assert agent.get("/api/support/queue").json()["data"] == []
    finally:
        server.stop()


def test_visitors_see_answers_not_a_reasoning_models_thinking(tmp_path):
    from app_harness import ScriptedEngine
    from server_harness import ServerThread, byte_tokenizer

    from aigc.server.app import create_app
    from aigc.server.backends import ModelBackends
    from aigc.server.local_backend import LocalBackend
    from aigc.settings import Settings

    engine = ScriptedEngine(words=["<think>", "They want ", "the hours.", "</think>", "We open ", "at nine."], once=True)
    backend = LocalBackend("thinker", engine, byte_tokenizer(), max_context=2048, reasoning_parser="think")
    app = create_app(Settings(models=[], database_url=f"sqlite:///{tmp_path}/web.db"), ModelBackends([backend]))
    server = ServerThread(app).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            made = http.post("/api/support/sites", json={"name": "shop", "origins": [SHOP], "model": "thinker",
                                                          "handoff_on_no_source": False})
            assert made.status_code == 201, made.text
            key = made.json()["public_key"]
            cid, token = open_visitor(server, key)
            with closing(widget(server, key, token=token)) as w:
                events = events_of(w.post(f"/conversations/{cid}/messages", json={"content": "When do you open?"}))
            assert "reasoning" not in {e["type"] for e in events}
            done = events[-1]["message"]
            assert done["content"] == "We open at nine." and "reasoning" not in done
            assert "the hours" not in str(events)
            staff_view = http.get(f"/api/support/conversations/{cid}").json()
            assert any(m.get("reasoning") == "They want the hours." for m in staff_view["messages"])
    finally:
        server.stop()
