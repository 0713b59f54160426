"""Scheduled evaluations over HTTP (server/eval_routes.py) on the scripted model: the sets, a run in
the background with its progress and results, its replies counted in /metrics and the dashboard,
runs per model, errors in the API's shape, runs a stopped server left behind, and administrators
only."""

from __future__ import annotations

import asyncio
import time
from contextlib import closing

import httpx
import pytest
from app_harness import SCRIPTED, ScriptedEngine, byte_tokenizer, error_of, scripted_server
from server_harness import metric

from aigc.accounts import UserStore
from aigc.apps.chat.model import GenerationParams
from aigc.apps.evals.sets import builtin_set_names, load_eval_set
from aigc.apps.evals.store import EvalRunStore
from aigc.apps.studio.catalog import load_builtin_templates
from aigc.server.app_models import BackendChatModel
from aigc.server.errors import APIError
from aigc.server.local_backend import LocalBackend
from aigc.store import Database

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('evals') / 'app.db'}"
    EvalRunStore(Database(url)).start(load_eval_set("summary"), "gone-model", total=4)  # a stopped server's run
    server, engine = scripted_server(url)
    yield server, engine, url
    server.stop()


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server[0].url, timeout=30) as client:
        yield client


def wait_done(http: httpx.Client, run_id: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = http.get(f"/api/evals/runs/{run_id}").json()
        if run["status"] != "running":
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still running")


def test_sets_are_listed_with_the_model_they_would_run_on(http):
    data = http.get("/api/evals/sets").json()["data"]
    assert [s["name"] for s in data] == builtin_set_names()
    poem = next(s for s in data if s["name"] == "poem")
    assert poem["template"] == "poem" and poem["gate"] == 0.9 and poem["items"] > 40
    assert poem["resolved_model"] == SCRIPTED  # the poet model is not served here: the first one
    assert poem["description"]["zh"] and poem["description"]["en"]


def test_a_run_goes_in_the_background_and_keeps_every_result(http, server):
    _, engine, _ = server
    before = len(engine.requests)
    r = http.post("/api/evals/runs", json={"set": "summary", "limit": 2})
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["status"] == "running" and run["total"] == 2 and run["model"] == SCRIPTED and run["source"] == "server"
    assert run["template"] == "summary" and run["template_version"] == load_builtin_templates()["summary"].version
    done = wait_done(http, run["id"])
    assert done["status"] == "done" and done["done"] == 2 and done["pass_rate"] == 0.0  # "word0 word1 …"
    assert done["checks"]["key terms"] == {"passed": 0, "total": 2, "required": True, "rate": 0.0, "mean_score": None}
    assert [x["id"] for x in done["results"]] == ["bike-lanes", "walking"]
    assert done["results"][0]["output"].startswith("word0 ") and done["results"][0]["checks"][0]["name"] == "key terms"
    prompts = [byte_tokenizer().decode(q.prompt_token_ids) for q in engine.requests[before:]]
    assert len(prompts) == 2 and any("bike lanes" in p for p in prompts)  # the template's rendered prompt
    assert {q.params.temperature for q in engine.requests[before:]} == {0.3}  # the template's params
    listed = http.get("/api/evals/runs", params={"model": SCRIPTED}).json()["data"]
    assert listed[0]["id"] == run["id"] and all(x["model"] == SCRIPTED for x in listed)
    assert http.get("/api/evals/runs", params={"set": "poem"}).json()["data"] == []


def test_a_runs_replies_count_in_the_metrics_and_the_dashboard(http):
    """Each item's reply is a request of the model's in /metrics (and so on the dashboard's token
    cards), as a chat reply is, though the run goes on after its POST was answered."""
    def counts() -> tuple[float, float, float, dict]:
        text = http.get("/metrics").text
        mine = http.get("/api/dashboard", params={"window": "5m"}).json()["models"].get(SCRIPTED, {})
        return (metric(text, "aigc:generation_tokens_total", model_name=SCRIPTED),
                metric(text, "aigc_requests_total", model=SCRIPTED, endpoint="/api/evals/runs", status="200"),
                metric(text, "aigc:prompt_tokens_total", model_name=SCRIPTED), mine)

    tokens, requests, prompt, dash = counts()
    r = http.post("/api/evals/runs", json={"set": "summary", "limit": 3})
    assert r.status_code == 202, r.text
    done = wait_done(http, r.json()["id"])
    generated = sum(x["completion_tokens"] for x in done["results"])
    assert done["status"] == "done" and generated > 0
    tokens2, requests2, prompt2, dash2 = counts()  # a reply is counted before its item is done
    assert tokens2 - tokens == generated and requests2 - requests == 3 and prompt2 > prompt
    assert dash2["generation_tokens"] - dash.get("generation_tokens", 0) == generated
    assert dash2["requests"] - dash.get("requests", 0) == 3


def test_a_reply_with_a_record_of_its_own_is_observed_once_as_it_ends():
    """The model a run uses: each reply is one record (the endpoint's, the model's), observed when
    it ends: read to the end, cancelled unread, or refused at the start with its status."""
    engine = ScriptedEngine()
    seen: list = []
    model = BackendChatModel(LocalBackend(SCRIPTED, engine, byte_tokenizer(), max_context=2048), 2048,
                             observe=seen.append, endpoint="/api/evals/runs")
    fitted = model.fit([{"role": "user", "content": "hi"}], 100)

    async def replies() -> None:
        stream = await model.stream(fitted, GenerationParams(max_tokens=3))
        assert not seen  # not before it ends
        assert "".join([piece async for piece in stream]) == "word0 word1 word2 "
        stream.cancel()  # after the end: no second count
        unread = await model.stream(fitted, GenerationParams(max_tokens=3))
        unread.cancel()
        unread.cancel()
        engine.busy = True
        try:
            await model.stream(fitted, GenerationParams(max_tokens=3))
        finally:
            engine.busy = False

    with pytest.raises(APIError):
        asyncio.run(replies())
    assert [(r.endpoint, r.model, r.status) for r in seen] == [("/api/evals/runs", SCRIPTED, 200)] * 2 + [
        ("/api/evals/runs", SCRIPTED, 429)]
    read, unread, refused = seen
    assert read.completion_tokens == 3 and read.prompt_tokens > 0 and read.ttft_s is not None and read.total_s > 0
    assert unread.completion_tokens == 0 and refused.error_code and refused.completion_tokens == 0


def test_a_stopped_servers_runs_are_marked_interrupted(http):
    runs = http.get("/api/evals/runs", params={"model": "gone-model"}).json()["data"]
    assert [r["status"] for r in runs] == ["interrupted"]


def test_bad_requests_are_4xx_in_the_api_shape(http):
    assert error_of(http.post("/api/evals/runs", json={"set": "sonnets"}), 404, "not_found")
    assert error_of(http.post("/api/evals/runs", json={"set": "../../etc/passwd"}), 404, "not_found")
    assert error_of(http.post("/api/evals/runs", json={"set": "poem", "model": "nope"}), 404)["param"] == "model"
    assert error_of(http.post("/api/evals/runs", json={"set": "poem", "limit": 0}), 422)["param"] == "limit"
    error_of(http.post("/api/evals/runs", json={"set": "poem", "extra": 1}), 422)
    error_of(http.post("/api/evals/runs", json={}), 422, "missing_field")
    error_of(http.get("/api/evals/runs/999999"), 404, "not_found")
    error_of(http.get("/api/evals/runs/abc"), 404, "not_found")
    error_of(http.get("/api/evals/runs", params={"limit": "many"}), 400, "invalid_value")


def test_only_administrators_see_and_run_evaluations(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    users = UserStore(Database(url))
    users.add("alice", PASSWORD, admin=True)
    users.add("bob", PASSWORD)
    server, _ = scripted_server(url)
    try:
        def login(name: str) -> httpx.Client:
            client = httpx.Client(base_url=server.url, timeout=30)
            assert client.post("/api/auth/login", json={"username": name, "password": PASSWORD}).status_code == 200
            return client

        with httpx.Client(base_url=server.url, timeout=30) as anon:
            error_of(anon.get("/api/evals/runs"), 401)
        with closing(login("bob")) as bob:
            for call in (lambda: bob.get("/api/evals/sets"), lambda: bob.get("/api/evals/runs"),
                         lambda: bob.get("/api/evals/runs/1"),
                         lambda: bob.post("/api/evals/runs", json={"set": "summary", "limit": 1})):
                error_of(call(), 403, "admin_only")
        with closing(login("alice")) as alice:
            r = alice.post("/api/evals/runs", json={"set": "summary", "limit": 1})
            assert r.status_code == 202 and r.json()["started_by"] == "alice"
            assert wait_done(alice, r.json()["id"])["status"] == "done"
    finally:
        server.stop()
