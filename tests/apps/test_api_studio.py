"""The studio's API over real HTTP: templates, rendering, streamed runs, user templates, import/export;
and the app on a `--remote` model (another server reached through the same backends registry)."""

from __future__ import annotations

import json

import httpx
import pytest
from app_harness import SCRIPTED, ScriptedEngine, byte_tokenizer, error_of, events_of, scripted_server

from aigc.server.local_backend import LocalBackend
from aigc.server.remote import RemoteBackend, RemoteSpec

BUILTIN = ["poem", "story", "news", "ad_copy", "product_description", "summary", "translation", "email_reply",
           "quiz", "customer_service"]

MY_TEMPLATE = {
    "name": {"en": "Haiku", "zh": "俳句"},
    "description": "Three lines",
    "fields": [{"name": "topic", "type": "text", "label": "Topic", "required": True},
               {"name": "mood", "type": "select", "options": ["calm", "wild"]}],
    "body": "Write a {{ mood }} haiku about {{ topic }}.",
    "params": {"temperature": 0.5, "max_tokens": 4},
}


def test_builtin_templates_are_listed_first_with_a_served_model(http):
    data = http.get("/api/templates").json()["data"]
    assert [t["id"] for t in data[: len(BUILTIN)]] == BUILTIN
    poem = data[0]
    assert poem["builtin"] and poem["model"] == "aigc-poet-zh"
    assert poem["resolved_model"] == SCRIPTED  # the poet model is not served here: the first one is used
    assert {o["value"] for o in poem["fields"][0]["options"]} == {"五言绝句", "七言绝句", "五言律诗", "七言律诗", "词"}
    assert poem["name"] == {"zh": "诗词创作", "en": "Classical Chinese poem"}


def test_render_shows_the_prompt(http):
    r = http.post("/api/templates/poem/render", json={"values": {"form": "五言律诗", "theme": "秋夜思乡"}})
    assert r.status_code == 200
    body = r.json()
    assert body["prompt"] == "写一首五言律诗，主题：秋夜思乡"  # the poet model's own instruction form
    assert body["system"] == "" and body["model"] == SCRIPTED and body["params"]["max_tokens"] == 160
    ci = http.post("/api/templates/poem/render", json={"values": {"form": "词", "cipai": "浣溪沙", "theme": "春"}}).json()
    assert "浣溪沙" in ci["prompt"]
    error_of(http.post("/api/templates/poem/render", json={"values": {}}), 422, "invalid_template")  # theme required
    error_of(http.post("/api/templates/poem/render", json={"values": {"theme": "x", "form": "sonnet"}}), 422)
    error_of(http.post("/api/templates/quiz/render", json={"values": {"topic": "x", "count": 999}}), 422)
    error_of(http.post("/api/templates/nope/render", json={"values": {}}), 404, "not_found")


def test_run_streams_the_output(http, app_server):
    _, engine = app_server
    r = http.post("/api/templates/translation/run", json={"values": {"text": "你好，世界"}, "params": {"max_tokens": 3}})
    events = events_of(r)
    assert events[0]["type"] == "start" and "你好，世界" in events[0]["prompt"] and events[0]["model"] == SCRIPTED
    assert [e["type"] for e in events[1:]] == ["delta"] * 3 + ["done"]
    assert events[-1]["text"] == "word0 word1 word2 " and events[-1]["finish_reason"] == "length"
    assert engine.requests[-1].params.temperature == 0.2  # the template's own params
    events_of(http.post("/api/templates/poem/run", json={"values": {"theme": "月"}, "params": {"max_tokens": 1}}))
    prompt = byte_tokenizer().decode(engine.requests[-1].prompt_token_ids)
    assert "写一首七言绝句，主题：月" in prompt and "system" not in prompt  # the rendered body, no system prompt


def test_json_output_mode_decodes_under_the_templates_schema(http, app_server):
    _, engine = app_server
    cards = {t["id"]: t for t in http.get("/api/templates").json()["data"]}
    schema = cards["quiz"]["output_schema"]
    assert schema["required"] == ["questions"] and cards["poem"]["output_schema"] is None
    events_of(http.post("/api/templates/quiz/run", json={"values": {"topic": "fractions"}, "output": "json",
                                                          "params": {"max_tokens": 3}}))
    guided = engine.requests[-1].params.guided
    assert guided is not None and guided.kind == "json_schema"
    assert json.loads(guided.spec)["required"] == ["questions"]
    events_of(http.post("/api/templates/quiz/run", json={"values": {"topic": "fractions"}, "params": {"max_tokens": 1}}))
    assert engine.requests[-1].params.guided is None  # text mode by default
    r = http.post("/api/templates/poem/run", json={"values": {"theme": "月"}, "output": "json"})
    assert error_of(r, 400)["param"] == "output"


def test_user_templates_create_edit_delete(http):
    r = http.post("/api/templates", json=MY_TEMPLATE)
    assert r.status_code == 201, r.text
    mine = r.json()
    assert mine["id"].startswith("user-") and mine["version"] == 1 and not mine["builtin"]
    assert mine["fields"][1]["options"][0] == {"value": "calm", "label": {"zh": "calm", "en": "calm"}}
    rendered = http.post(f"/api/templates/{mine['id']}/render", json={"values": {"topic": "rain"}}).json()
    assert rendered["prompt"] == "Write a calm haiku about rain."
    r = http.put(f"/api/templates/{mine['id']}", json={**MY_TEMPLATE, "body": "Haiku on {{ topic }}, {{ mood }}."})
    assert r.status_code == 200 and r.json()["version"] == 2
    assert http.get(f"/api/templates/{mine['id']}").json()["body"] == "Haiku on {{ topic }}, {{ mood }}."
    assert http.delete(f"/api/templates/{mine['id']}").status_code == 204
    error_of(http.get(f"/api/templates/{mine['id']}"), 404)
    error_of(http.delete(f"/api/templates/{mine['id']}"), 404)


def test_builtin_templates_are_read_only(http):
    error_of(http.put("/api/templates/poem", json=MY_TEMPLATE), 403, "read_only_template")
    error_of(http.delete("/api/templates/poem"), 403, "read_only_template")


@pytest.mark.parametrize("change, words", [
    ({"body": "{% if %}"}, "syntax"),
    ({"body": ""}, "body"),
    ({"name": None}, "name"),
    ({"fields": [{"name": "bad name"}]}, "name"),
    ({"fields": [{"name": "a", "type": "color"}]}, "type"),
    ({"fields": [{"name": "a", "type": "select"}]}, "options"),
    ({"fields": [{"name": "a"}, {"name": "a"}]}, "unique"),
])
def test_invalid_templates_are_422(http, change, words):
    error = error_of(http.post("/api/templates", json={**MY_TEMPLATE, **change}), 422, "invalid_template")
    assert words in error["message"]


def test_templates_cannot_escape_the_sandbox(http):
    evil = {**MY_TEMPLATE, "body": "{{ topic.__class__.__mro__[1].__subclasses__() }}"}
    mine = http.post("/api/templates", json=evil).json()
    error = error_of(http.post(f"/api/templates/{mine['id']}/render", json={"values": {"topic": "x"}}), 422)
    assert "__class__" in error["message"] or "unsafe" in error["message"]


def test_export_and_import_templates(http):
    mine = http.post("/api/templates", json=MY_TEMPLATE).json()
    doc = http.get("/api/templates/export").json()
    assert doc["format"] == "aigc.templates" and mine["id"] in [t["id"] for t in doc["templates"]]
    assert all(not t["builtin"] for t in doc["templates"])
    r = http.post("/api/templates/import", json=doc)
    assert r.status_code == 201
    created = r.json()["data"]
    assert len(created) == len(doc["templates"]) and all(t["id"] not in {x["id"] for x in doc["templates"]} for t in created)
    poem = http.get("/api/templates/export", params={"ids": "poem"}).json()["templates"]
    assert poem[0]["id"] == "poem"  # a built-in one can be exported, and imported as a user copy
    copy = http.post("/api/templates/import", json=poem[0]).json()["data"][0]
    assert copy["id"].startswith("user-") and copy["body"] == poem[0]["body"]
    error_of(http.post("/api/templates/import", json={"templates": [{"body": "x"}]}), 422, "invalid_template")
    error_of(http.post("/api/templates/import", json=[]), 422)


def test_preferred_model_is_used_when_served(tmp_path):
    poet = LocalBackend("aigc-poet-zh", ScriptedEngine(), byte_tokenizer(), max_context=512)
    server, _ = scripted_server(tmp_path / "p.db", extra=[poet], studio_models={"story": "aigc-poet-zh"})
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            cards = {t["id"]: t["resolved_model"] for t in http.get("/api/templates").json()["data"]}
            assert cards["poem"] == "aigc-poet-zh"  # the template's own preference
            assert cards["story"] == "aigc-poet-zh"  # a configured override (settings.studio_models)
            assert cards["news"] == SCRIPTED
    finally:
        server.stop()


def test_chat_on_a_remote_model(tmp_path):
    """Server B serves model `far` by proxying server A: the app streams it like a local model."""
    upstream, upstream_engine = scripted_server(tmp_path / "a.db")
    remote = RemoteBackend(RemoteSpec("far", upstream.url, model=SCRIPTED))
    server, _ = scripted_server(tmp_path / "b.db", extra=[remote])
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            models = http.get("/api/models").json()["data"]
            assert {"id": "far", "window": 4096, "remote": True, "ready": True} in models
            c = http.post("/api/conversations", json={"model": "far"}).json()
            events = events_of(http.post(f"/api/conversations/{c['id']}/messages",
                                         json={"content": "hello far away", "params": {"max_tokens": 3}}))
            assert events[0]["model"] == "far" and events[0]["context"]["exact"] is False
            assert events[-1]["type"] == "done" and events[-1]["message"]["content"] == "word0 word1 word2 "
            assert events[-1]["message"]["model"] == "far" and events[-1]["message"]["completion_tokens"] == 3
            prompt = byte_tokenizer().decode(upstream_engine.requests[-1].prompt_token_ids)
            assert "hello far away" in prompt
            run = events_of(http.post("/api/templates/summary/run",
                                      json={"values": {"text": "abc"}, "model": "far", "params": {"max_tokens": 2}}))
            assert run[-1]["text"] == "word0 word1 "
    finally:
        server.stop()
        upstream.stop()


def test_unreachable_remote_is_a_503_before_anything_is_stored(tmp_path):
    """The same rule as a busy local engine: the request fails at once, the message is not stored."""
    remote = RemoteBackend(RemoteSpec("gone", "http://127.0.0.1:9"))  # nothing listens there
    server, _ = scripted_server(tmp_path / "c.db", extra=[remote])
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            c = http.post("/api/conversations", json={"model": "gone"}).json()
            r = http.post(f"/api/conversations/{c['id']}/messages", json={"content": "hi"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "remote_unavailable"
            assert "gone" in r.json()["error"]["message"] and r.headers["retry-after"]
            assert http.get(f"/api/conversations/{c['id']}").json()["messages"] == []
    finally:
        server.stop()
