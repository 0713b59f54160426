"""A second aigc server registered with `--remote` serves the first one's model through the same API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from server_harness import TINY, ServerThread, free_port, tiny_app
from test_http_endpoints import error_of, metric

from aigc.server.app import create_app
from aigc.server.remote import RemoteSpec, parse_remote_spec
from aigc.settings import Settings

CHAT = [{"role": "user", "content": "Say something."}]
SRC = Path(__file__).resolve().parents[2] / "src"
UPSTREAM_KEY = "upstream-secret"


@pytest.fixture(scope="module")
def servers():
    """(upstream with an API key, proxy that registers the upstream's tiny model as "proxied")."""
    upstream = ServerThread(tiny_app(api_keys=[UPSTREAM_KEY], ctx=4096)).start()  # room for a long stream
    remotes = [
        f"proxied={upstream.url}/v1,key=UPSTREAM_KEY,model={TINY}",
        f"badkey={upstream.url},model={TINY}",  # a bare URL gets /v1; no key: the upstream refuses
        f"missing={upstream.url}/v1,key=UPSTREAM_KEY,model=no-such-model",
        f"down=http://127.0.0.1:{free_port()}/v1",
    ]
    app = create_app(Settings(models=[], remotes=remotes), environ={"UPSTREAM_KEY": UPSTREAM_KEY})
    proxy = ServerThread(app).start()
    yield upstream, proxy
    proxy.stop()
    upstream.stop()


def clients(servers):
    upstream, proxy = servers
    direct = openai.OpenAI(base_url=upstream.url + "/v1", api_key=UPSTREAM_KEY, max_retries=0)
    via = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)
    return direct, via


def test_models_list_names_remotes(servers):
    _, via = clients(servers)
    models = {m.id: m.owned_by for m in via.models.list()}
    assert models == {"proxied": "remote", "badkey": "remote", "missing": "remote", "down": "remote"}


def test_chat_through_the_proxy_equals_direct(servers):
    direct, via = clients(servers)
    kw = dict(messages=CHAT, max_tokens=8, temperature=0)
    a = direct.chat.completions.create(model=TINY, **kw)
    b = via.chat.completions.create(model="proxied", **kw)
    assert b.model == "proxied" and b.choices[0].message.content == a.choices[0].message.content
    assert b.usage.total_tokens == a.usage.total_tokens


def test_streams_through_the_proxy(servers):
    direct, via = clients(servers)
    kw = dict(messages=CHAT, max_tokens=8, temperature=0, stream=True)
    expected = "".join(c.choices[0].delta.content or "" for c in direct.chat.completions.create(model=TINY, **kw))
    chunks = list(via.chat.completions.create(model="proxied", **kw))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert all(c.model == "proxied" and c.usage is None and c.choices for c in chunks)  # usage not asked for
    with_usage = list(via.chat.completions.create(model="proxied", stream_options={"include_usage": True}, **kw))
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens > 0
    text = "".join(c.choices[0].text for c in via.completions.create(model="proxied", prompt="abc", max_tokens=5,
                                                                     temperature=0, stream=True))
    assert text == direct.completions.create(model=TINY, prompt="abc", max_tokens=5, temperature=0).choices[0].text


def test_remote_errors_keep_their_status(servers):
    _, via = clients(servers)
    with pytest.raises(openai.BadRequestError) as e:
        via.chat.completions.create(model="proxied", messages=CHAT, temperature=7)
    assert e.value.param == "temperature"
    with pytest.raises(openai.BadRequestError):  # streamed requests fail before the stream starts
        via.chat.completions.create(model="proxied", messages=CHAT, temperature=7, stream=True)
    with pytest.raises(openai.NotFoundError):
        via.chat.completions.create(model="missing", messages=CHAT)
    with pytest.raises(openai.InternalServerError) as e:
        via.chat.completions.create(model="badkey", messages=CHAT)
    assert e.value.status_code == 502 and e.value.code == "remote_auth_failed"
    with pytest.raises(openai.InternalServerError) as e:
        via.chat.completions.create(model="down", messages=CHAT, stream=True)
    assert e.value.status_code == 503 and e.value.code == "remote_unavailable"


def test_tokenize_is_forwarded(servers):
    upstream, proxy = servers
    body = {"prompt": "hello"}
    via = httpx.post(proxy.url + "/tokenize", json={"model": "proxied", **body}).json()
    direct = httpx.post(upstream.url + "/tokenize", json={"model": TINY, **body},
                        headers={"Authorization": f"Bearer {UPSTREAM_KEY}"}).json()
    assert via == direct and via["count"] == 5


def test_proxied_requests_are_counted(servers):
    _, proxy = servers
    _, via = clients(servers)
    before = httpx.get(proxy.url + "/metrics").text
    list(via.chat.completions.create(model="proxied", messages=CHAT, max_tokens=4, temperature=0, stream=True,
                                     extra_body={"ignore_eos": True}))
    with pytest.raises(openai.InternalServerError):
        via.completions.create(model="down", prompt="x")
    after = httpx.get(proxy.url + "/metrics").text

    def grew(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("aigc_requests_total", model="proxied", status="200") == 1
    assert grew("aigc_requests_total", model="down", status="503") == 1
    assert grew("aigc_generation_tokens_total", model="proxied") == 4  # exact: from the remote's usage
    assert grew("aigc_time_to_first_token_seconds_count", model="proxied") == 1
    assert metric(after, "aigc_requests_in_flight", model="proxied") == 0


def test_disconnect_through_the_proxy_frees_the_remote_slot(servers):
    upstream, proxy = servers
    body = {"model": "proxied", "prompt": "abc", "max_tokens": 4000, "temperature": 0, "stream": True,
            "ignore_eos": True}
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", proxy.url + "/v1/completions", json=body) as r:
            lines = r.iter_lines()
            assert next(ln for ln in lines if ln).startswith("data: {")
        for _ in range(200):  # the slot frees first; the request is counted when its response closes
            text = c.get(upstream.url + "/metrics").text
            if metric(text, "aigc_requests_running", model=TINY) == 0 and \
                    metric(text, "aigc_requests_total", model=TINY, status="499") >= 1:
                break
            time.sleep(0.02)
        assert metric(text, "aigc_requests_running", model=TINY) == 0
        assert metric(text, "aigc_requests_total", model=TINY, status="499") >= 1


def test_parse_remote_spec():
    env = {"K": "sk-1"}
    assert parse_remote_spec("gpt=https://api.openai.com/v1,key=K", env) == RemoteSpec(
        "gpt", "https://api.openai.com/v1", "sk-1", None)
    assert parse_remote_spec("m=http://h:1,model=llama3", {}) == RemoteSpec("m", "http://h:1", None, "llama3")
    for bad in ("noequals", "=http://h", "m=ftp://h", "m=http://h,key=MISSING", "m=http://h,colour=red",
                "m=http://h,key="):
        with pytest.raises(ValueError):
            parse_remote_spec(bad, env)


def test_bad_remote_in_settings_is_refused():
    with pytest.raises(ValueError, match="UNSET"):
        create_app(Settings(models=[], remotes=["r=http://127.0.0.1:9/v1,key=UNSET"]), environ={})


def test_error_shape_for_unreachable(servers):
    _, proxy = servers
    r = httpx.post(proxy.url + "/v1/chat/completions", json={"model": "down", "messages": CHAT})
    assert error_of(r, 503)["code"] == "remote_unavailable" and r.headers["retry-after"]


@pytest.mark.slow
def test_aigc_serve_with_remote_flag(servers):
    """`aigc serve --remote` in its own process, in front of the upstream tiny server."""
    upstream, _ = servers
    port = free_port()
    env = {**os.environ, "UP_KEY": UPSTREAM_KEY, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "aigc", "serve", "--port", str(port),
           "--remote", f"far={upstream.url}/v1,key=UP_KEY,model={TINY}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "aigc serve did not come up"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list()] == ["far"]
        r = client.chat.completions.create(model="far", messages=CHAT, max_tokens=3, temperature=0)
        assert r.model == "far" and r.usage.completion_tokens >= 1
    finally:
        proc.terminate()
        proc.wait(10)
    log = proc.stdout.read()
    assert "request id=" in log and "model=far" in log and "status=200" in log  # the request log line



def test_a_remote_without_model_is_resolved_from_the_upstreams_model_list(servers):
    """`--remote NAME=URL` without model=: NAME maps to the upstream's one model (no 404 for NAME)."""
    upstream, _ = servers
    app = create_app(Settings(models=[], remotes=[f"auto={upstream.url}/v1,key=UPSTREAM_KEY"]),
                     environ={"UPSTREAM_KEY": UPSTREAM_KEY})
    proxy = ServerThread(app).start()
    try:
        app.state.backends.wait_loaded(60)
        via = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)
        assert [m.id for m in via.models.list()] == ["auto"]
        reply = via.chat.completions.create(model="auto", messages=CHAT, max_tokens=4, temperature=0)
        assert reply.model == "auto" and reply.choices[0].message.content is not None
    finally:
        proxy.stop()


def test_several_upstream_models_are_served_as_name_slash_id():
    from fastapi import FastAPI

    from aigc.server.remote import RemoteSpec, resolve_remote

    upstream_app = FastAPI()

    @upstream_app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "alpha", "object": "model"}, {"id": "beta", "object": "model"}]}

    upstream = ServerThread(upstream_app).start()
    try:
        backends = resolve_remote(RemoteSpec("up", upstream.url))
        assert [(b.name, b.remote_model) for b in backends] == [("up", "alpha"), ("up/alpha", "alpha"),
                                                                ("up/beta", "beta")]
    finally:
        upstream.stop()
    down = resolve_remote(RemoteSpec("gone", f"http://127.0.0.1:{free_port()}"), timeout=2)
    assert [(b.name, b.remote_model) for b in down] == [("gone", "gone")]  # unreachable: NAME as sent
