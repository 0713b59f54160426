"""Plain HTTP against the tiny server: health, metrics, tokenize, error shapes, auth, CORS, request log."""

from __future__ import annotations

import logging
import re
import time

import httpx
import openai
import pytest
from server_harness import TINY, ServerThread, tiny_app

CHAT = {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0}


def error_of(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_health(http):
    r = http.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "models": [TINY]}


def test_tokenize_detokenize_roundtrip(http):
    r = http.post("/tokenize", json={"model": TINY, "prompt": "héllo"})
    body = r.json()
    assert r.status_code == 200 and body["count"] == len(body["tokens"]) == len("héllo".encode())
    assert body["max_model_len"] == 512
    assert http.post("/detokenize", json={"model": TINY, "tokens": body["tokens"]}).json() == {"prompt": "héllo"}
    chat = http.post("/tokenize", json={"model": TINY, "messages": [{"role": "user", "content": "hi"}]}).json()
    completion = http.post("/v1/chat/completions", json=CHAT).json()
    assert chat["count"] == completion["usage"]["prompt_tokens"]  # the same template path
    error_of(http.post("/detokenize", json={"model": TINY, "tokens": [10**6]}), 400)
    error_of(http.post("/tokenize", json={"model": "nope", "prompt": "x"}), 404)


def test_error_shapes(http):
    assert error_of(http.get("/no/such/route"), 404)["message"].startswith("Unknown route")
    bad_json = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert error_of(bad_json, 400)["code"] == "invalid_json"
    assert error_of(http.post("/v1/chat/completions", json={"messages": []}), 400)["param"] in ("model", "messages")
    assert error_of(http.post("/v1/completions", json={"model": TINY, "prompt": "a", "n": "many"}), 400)["param"] == "n"
    assert error_of(http.post("/v1/completions", json={"model": TINY, "prompt": ""}), 400)["param"] == "prompt"
    assert error_of(http.post("/v1/completions", json={"model": TINY, "prompt": "a", "echo": True, "logprobs": 1}),
                    400)["param"] == "echo"
    assert error_of(http.post("/v1/chat/completions", json={**CHAT, "stream_options": {"include_usage": True}}),
                    400)["param"] == "stream_options"
    tools = [{"type": "function", "function": {"name": "not a name!", "parameters": {}}}]
    assert error_of(http.post("/v1/chat/completions", json={**CHAT, "tools": tools}), 400)["param"] == "tools"
    assert error_of(http.post("/v1/chat/completions", json={**CHAT, "top_logprobs": 2}), 400)["param"] == "top_logprobs"
    assert error_of(http.post("/v1/completions", json={"model": TINY, "prompt": "a", "logit_bias": {"x": 1}}),
                    400)["param"] == "logit_bias"
    assert error_of(http.post("/v1/completions", json={"model": TINY, "prompt": "a", "stop": [""]}), 400)["param"] == "stop"
    assert error_of(http.post("/v1/completions", json={"model": TINY, "prompt": [10**6]}), 400)["param"] == "prompt"
    assert error_of(http.post("/v1/completions", json={"model": TINY, "prompt": {"a": 1}}), 400)["param"] == "prompt"
    assert error_of(http.post("/v1/completions", json={"model": TINY, "prompt": "a", "seed": 2**70}), 400)["param"] == "seed"
    assert error_of(http.post("/v1/completions", json={"model": TINY, "prompt": "a", "n": 9}), 400)["param"] == "n"
    assert error_of(http.post("/v1/chat/completions", json={**CHAT, "chat_template_kwargs": {"messages": 1}}),
                    400)["param"] == "chat_template_kwargs"


def test_unknown_fields_are_ignored_and_developer_role_accepted(http):
    body = {**CHAT, "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}],
            "store": False, "metadata": {"a": "b"}, "parallel_tool_calls": True, "user": "u1"}
    assert http.post("/v1/chat/completions", json=body).status_code == 200


def test_request_log_line_and_request_id(http, caplog):
    with caplog.at_level(logging.INFO, logger="aigc.server.requests"):
        r = http.post("/v1/chat/completions", json=CHAT)
        rid = r.headers["x-request-id"]
        for _ in range(100):  # the line is written just after the last byte of the answer went out
            lines = [rec.getMessage() for rec in caplog.records if rid in rec.getMessage()]
            if lines:
                break
            time.sleep(0.02)
    assert r.json()["id"] == f"chatcmpl-{rid}"
    (line,) = lines
    for field in (f"id={rid}", f"model={TINY}", "status=200", "prompt_tokens=", "completion_tokens=", "ttft_ms=",
                  "total_ms="):
        assert field in line


def test_metrics(http):
    before = http.get("/metrics").text
    http.post("/v1/chat/completions", json=CHAT)
    http.post("/v1/chat/completions", json={**CHAT, "temperature": 9})
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text

    def grew(name, **labels):
        return metric(text, name, **labels) - metric(before, name, **labels)

    assert grew("aigc_requests_total", model=TINY, endpoint="/v1/chat/completions", status="200") == 1
    assert grew("aigc_requests_total", endpoint="/v1/chat/completions", status="400") == 1
    assert grew("aigc_time_to_first_token_seconds_count", model=TINY) == 1
    assert grew("aigc_inter_token_latency_seconds_count", model=TINY) >= 1
    assert grew("aigc_prompt_tokens_total", model=TINY) > 0
    assert grew("aigc_generation_tokens_total", model=TINY) > 0
    for gauge in ("aigc_requests_running", "aigc_requests_waiting", "aigc_kv_cache_usage_ratio",
                  "aigc_spec_decode_draft_tokens_total", "aigc_spec_decode_accepted_tokens_total",
                  "aigc_spec_decode_acceptance_ratio"):
        assert f'{gauge}{{model="{TINY}"}}' in text


@pytest.fixture(scope="module")
def keyed_server():
    server = ServerThread(tiny_app(api_keys=["secret-1", "secret-2"])).start()
    yield server
    server.stop()


def test_api_keys(keyed_server):
    with httpx.Client(base_url=keyed_server.url, timeout=30) as c:
        assert error_of(c.post("/v1/chat/completions", json=CHAT), 401)["code"] == "missing_api_key"
        bad = c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer wrong"})
        assert error_of(bad, 401)["code"] == "invalid_api_key"
        # The key is checked before the body is even parsed.
        assert c.post("/v1/completions", content=b"{", headers={"content-type": "application/json"}).status_code == 401
        assert c.get("/v1/models").status_code == 401
        for key in ("secret-1", "secret-2"):
            ok = c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
            assert ok.status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/metrics").status_code == 200  # stay open
    wrong = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=TINY, messages=CHAT["messages"])
    right = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key="secret-2", max_retries=0)
    assert right.chat.completions.create(model=TINY, messages=CHAT["messages"], max_tokens=2).choices


def test_cors_off_by_default(http):
    r = http.options("/v1/models", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_when_origins_listed():
    server = ServerThread(tiny_app(cors_origins=["http://app.example"])).start()
    try:
        preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        r = httpx.options(server.url + "/v1/chat/completions", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.example"
        other = httpx.options(server.url + "/v1/chat/completions", headers={**preflight, "Origin": "http://x.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        server.stop()
