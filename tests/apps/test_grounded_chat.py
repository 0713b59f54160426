"""Conversations grounded in knowledge bases: each turn retrieves (follow-ups searched with the
question before them), the sources go into the prompt, the reply keeps them, and with no
relevant source the assistant says so without asking the model."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "knowledge"))

from app_harness import error_of, events_of  # noqa: E402
from corpus import RETURNS_MD, SHIPPING_HTML  # noqa: E402


def _prompt_text(engine, tokenizer_decode=None) -> str:
    from server_harness import byte_tokenizer

    return byte_tokenizer().decode(engine.requests[-1].prompt_token_ids)


def test_grounded_turns_cite_and_no_source_is_said(app_server, http):
    server, engine = app_server
    kid = http.post("/api/knowledge-bases", json={"name": "grounding"}).json()["id"]
    r = http.post(f"/api/knowledge-bases/{kid}/documents", files=[
        ("files", ("returns.md", RETURNS_MD, "text/markdown")), ("files", ("shipping.html", SHIPPING_HTML, "text/html"))])
    assert all(d["status"] == "indexed" for d in r.json()["data"])
    error_of(http.post("/api/conversations", json={"knowledge_base_ids": [999999]}), 404)
    cid = http.post("/api/conversations", json={"knowledge_base_ids": [kid]}).json()["id"]
    assert http.get(f"/api/conversations/{cid}").json()["knowledge_base_ids"] == [kid]

    events = events_of(http.post(f"/api/conversations/{cid}/messages",
                                 json={"content": "退货政策是什么？", "params": {"max_tokens": 3}}))
    done = events[-1]
    assert done["type"] == "done"
    sources = done["message"]["sources"]
    assert sources and sources[0]["n"] == 1 and sources[0]["document"]["filename"] == "returns.md"
    prompt = _prompt_text(engine)
    assert "[1] returns.md" in prompt and "7天内可以无理由退货" in prompt  # the source is in the prompt
    stored = http.get(f"/api/conversations/{cid}").json()["messages"][-1]
    assert stored["sources"] == sources  # kept with the message

    requests_before = len(engine.requests)
    events = events_of(http.post(f"/api/conversations/{cid}/messages",
                                 json={"content": "What is the capital of France?", "params": {"max_tokens": 3}}))
    reply = events[-1]["message"]
    assert reply["sources"] == [] and reply["finish_reason"] == "no_source"
    assert "no relevant source" in reply["content"]
    assert len(engine.requests) == requests_before  # the model was not asked to invent one

    cid2 = http.post("/api/conversations", json={"knowledge_base_ids": [kid]}).json()["id"]
    events_of(http.post(f"/api/conversations/{cid2}/messages",
                        json={"content": "退货政策是什么？", "params": {"max_tokens": 2}}))
    follow = events_of(http.post(f"/api/conversations/{cid2}/messages",
                                 json={"content": "那运费呢？", "params": {"max_tokens": 2}}))
    cited = follow[-1]["message"]["sources"]
    assert any(s["heading"] == "退货政策 > 运费" for s in cited), cited  # the follow-up found the shipping rule


def test_a_studio_run_can_be_grounded(app_server, http):
    server, engine = app_server
    kid = http.post("/api/knowledge-bases", json={"name": "studio grounding"}).json()["id"]
    http.post(f"/api/knowledge-bases/{kid}/documents", files=[("files", ("returns.md", RETURNS_MD, "text/markdown"))])
    body = {"values": {"text": "退货政策是什么？"}, "params": {"max_tokens": 2}, "knowledge_base_ids": [kid]}
    events = events_of(http.post("/api/templates/summary/run", json=body))
    assert events[0]["sources"] and events[-1]["sources"][0]["document"]["filename"] == "returns.md"
    assert "[1] returns.md" in _prompt_text(engine)
    plain = events_of(http.post("/api/templates/summary/run", json={**body, "knowledge_base_ids": None}))
    assert plain[-1]["sources"] is None
    error_of(http.post("/api/templates/summary/run", json={**body, "knowledge_base_ids": [424242]}), 404)
