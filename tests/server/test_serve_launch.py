"""Safe binding rules, and a server that answers (503) while its models load in the background."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest
from server_harness import TINY, ServerThread, byte_tokenizer, tiny_engine
from test_http_endpoints import error_of

from aigc.server.app import create_app
from aigc.server.backends import ModelBackends
from aigc.server.launch import ServeConfigError, check_bind, is_loopback, serve
from aigc.server.local_backend import LocalBackend
from aigc.settings import Settings


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.com", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_non_loopback_bind_needs_a_key_or_insecure():
    check_bind(Settings(host="127.0.0.1"))
    check_bind(Settings(host="0.0.0.0", api_keys=["k"]))
    check_bind(Settings(host="0.0.0.0", insecure=True))
    with pytest.raises(ServeConfigError, match="--api-key") as e:
        check_bind(Settings(host="0.0.0.0"))
    assert "\n" not in str(e.value)


def test_an_empty_api_key_is_refused_not_ignored():
    """`--api-key "$UNSET"` must not start an open server."""
    for keys in ([""], ["  "], ["good", ""]):
        with pytest.raises(ServeConfigError, match="empty"):
            check_bind(Settings(host="0.0.0.0", api_keys=keys))
        with pytest.raises(ServeConfigError, match="empty"):
            check_bind(Settings(host="127.0.0.1", api_keys=keys))


def test_non_loopback_bind_with_an_account_needs_no_key(tmp_path):
    from aigc.accounts import UserStore
    from aigc.store import Database

    url = f"sqlite:///{tmp_path}/app.db"
    with pytest.raises(ServeConfigError, match="aigc users add NAME --admin"):
        check_bind(Settings(host="0.0.0.0", database_url=url))
    assert not (tmp_path / "app.db").exists()  # the check created no database
    UserStore(Database(url)).add("admin", "long enough password", admin=True)
    check_bind(Settings(host="0.0.0.0", database_url=url))
    with pytest.raises(ServeConfigError, match="--rate-limit"):
        check_bind(Settings(host="127.0.0.1", rate_limit="lots"))


def test_serve_refuses_before_loading_anything():
    loaded = []
    backends = ModelBackends()
    backends.add_loader("never", lambda: loaded.append(1))
    with pytest.raises(ServeConfigError):
        serve(Settings(host="0.0.0.0", models=["never"]), backends=backends)
    assert loaded == []


def test_health_is_503_while_loading_then_200():
    release = threading.Event()
    tokenizer = byte_tokenizer()

    def slow_loader() -> LocalBackend:
        release.wait(30)
        engine = tiny_engine(tokenizer)
        engine.start()
        return LocalBackend(TINY, engine, tokenizer, max_context=engine.max_context)

    backends = ModelBackends()
    backends.add_loader(TINY, slow_loader)
    server = ServerThread(create_app(Settings(models=[]), backends)).start()
    try:
        assert error_of(httpx.get(server.url + "/health"), 503)["code"] == "loading"
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as e:
            client.completions.create(model=TINY, prompt="a", max_tokens=2)
        assert e.value.status_code == 503
        with pytest.raises(openai.NotFoundError):  # a name the server never heard of is still a 404
            client.completions.create(model="other", prompt="a", max_tokens=2)
        release.set()
        assert backends.wait_loaded(30)
        assert httpx.get(server.url + "/health").status_code == 200
        assert client.completions.create(model=TINY, prompt="a", max_tokens=2).usage.completion_tokens >= 1
    finally:
        release.set()
        server.stop()


def test_a_model_that_fails_to_load_is_reported():
    def broken() -> LocalBackend:
        raise FileNotFoundError("weights.gguf not found")

    backends = ModelBackends()
    backends.add_loader("broken", broken)
    backends.start_loading()
    assert backends.wait_loaded(10)
    app = create_app(Settings(models=[]), backends)
    server = ServerThread(app).start()
    try:
        health = error_of(httpx.get(server.url + "/health"), 503)
        assert "weights.gguf not found" in health["message"]
        r = httpx.post(server.url + "/v1/completions", json={"model": "broken", "prompt": "a"})
        assert "failed to load" in error_of(r, 503)["message"]
    finally:
        server.stop()
