"""The monitoring dashboard's API (GET /api/dashboard): its totals are /metrics' counters (one feed,
the request records), they outlive a restart (the history is in the database), feedback and
moderation come from the app database, and only administrators may read it."""

from __future__ import annotations

import math
import random
import time
from contextlib import closing

import httpx
import pytest
from app_harness import SCRIPTED, error_of, events_of, scripted_server
from server_harness import metric

from aigc.accounts import UserStore
from aigc.safety.events import ModerationLog
from aigc.server.history import Sketch
from aigc.store import Database

PASSWORD = "correct horse battery"
CHAT = {"model": SCRIPTED, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}




def settled_metrics(http: httpx.Client, requests: int) -> str:
    """/metrics once `requests` model requests are counted (a stream is counted after its last byte)."""
    for _ in range(200):
        text = http.get("/metrics").text
        if metric(text, "aigc_requests_total", model=SCRIPTED) >= requests:
            return text
        time.sleep(0.05)
    raise AssertionError(f"fewer than {requests} requests counted")


def drive(http: httpx.Client, engine) -> int:
    """A mix of traffic: OpenAI chat (plain, streamed), a completion, a web-app reply, a studio run,
    an unknown model (404) and a full queue (429). Returns how many requests reached the model."""
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    r = http.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert r.status_code == 200 and "[DONE]" in r.text
    assert http.post("/v1/completions", json={"model": SCRIPTED, "prompt": "once upon", "max_tokens": 3}).status_code == 200
    conv = http.post("/api/conversations", json={"title": "d"}).json()
    events_of(http.post(f"/api/conversations/{conv['id']}/messages", json={"content": "hello", "params": {"max_tokens": 5}}))
    events_of(http.post("/api/templates/poem/run", json={"values": {"theme": "月"}, "params": {"max_tokens": 2}}))
    error_of(http.post("/v1/chat/completions", json={**CHAT, "model": "nope"}), 404, "model_not_found")
    engine.busy = True
    try:
        error_of(http.post("/v1/chat/completions", json=CHAT), 429, "rate_limit_exceeded")
    finally:
        engine.busy = False
    return 6  # the 404 named no served model, so it counts without one


@pytest.fixture
def fresh(tmp_path):
    server, engine = scripted_server(tmp_path / "app.db")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield server, engine, http
    server.stop()


def test_dashboard_totals_are_the_metrics_counters(fresh):
    server, engine, http = fresh
    served = drive(http, engine)
    text = settled_metrics(http, served)
    body = http.get("/api/dashboard", params={"window": "5m"}).json()
    mine = body["models"][SCRIPTED]

    assert mine["requests"] == metric(text, "aigc_requests_total", model=SCRIPTED) == served
    assert mine["prompt_tokens"] == metric(text, "aigc:prompt_tokens_total", model_name=SCRIPTED) > 0
    assert mine["generation_tokens"] == metric(text, "aigc:generation_tokens_total", model_name=SCRIPTED) \
        == 4 + 4 + 3 + 5 + 2  # the web app's replies and studio runs count too
    assert mine["cached_tokens"] == metric(text, "aigc:prefix_cache_hits_total", model_name=SCRIPTED)
    assert mine["prompt_tokens"] == metric(text, "aigc:prefix_cache_queries_total", model_name=SCRIPTED)
    for name in ("ttft", "itl", "e2e"):
        prom = {"ttft": "aigc:time_to_first_token_seconds", "itl": "aigc:inter_token_latency_seconds",
                "e2e": "aigc:e2e_request_latency_seconds"}[name]
        assert mine[name]["count"] == metric(text, f"{prom}_count", model_name=SCRIPTED), name
        assert mine[name]["sum"] == pytest.approx(metric(text, f"{prom}_sum", model_name=SCRIPTED)), name
        assert mine[name]["p50"] <= mine[name]["p95"] <= mine[name]["p99"]
    assert mine["ttft"]["count"] == 5  # the 429 produced no token
    assert body["totals"]["rate_limited"] == metric(text, "aigc_requests_total", status="429") == 1
    assert mine["statuses"] == {"200": 5, "429": 1}
    assert {"model": "", "status": 404, "code": "model_not_found", "count": 1} in body["errors"]
    assert {"model": SCRIPTED, "status": 429, "code": "rate_limit_exceeded", "count": 1} in body["errors"]
    assert body["totals"]["requests"] == served + 1 and body["totals"]["errors"] == 2

    series = body["series"]
    assert len(series["t"]) == 30 and body["step"] == 10
    assert sum(series["requests"]) == body["totals"]["requests"]
    assert sum(series["generation_tokens_per_s"]) * body["step"] == pytest.approx(mine["generation_tokens"])
    assert any(v is not None for v in series["ttft_p50"])
    assert [m["model"] for m in body["live"]] == [SCRIPTED] and body["live"][0]["waiting"] == 0

    only = http.get("/api/dashboard", params={"window": "1h", "model": SCRIPTED}).json()
    assert only["totals"]["requests"] == served and set(only["models"]) == {"", SCRIPTED}
    assert len(only["series"]["t"]) == 60


def test_history_outlives_a_restart(tmp_path):
    server, engine = scripted_server(tmp_path / "app.db")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        settled_metrics(http, 1)
    server.stop()  # the slice being filled is written at shutdown
    server, engine = scripted_server(tmp_path / "app.db")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert metric(http.get("/metrics").text, "aigc_requests_total", model=SCRIPTED) == 0  # a new process
            body = http.get("/api/dashboard", params={"window": "24h"}).json()
            assert body["models"][SCRIPTED]["requests"] == 1 and body["models"][SCRIPTED]["generation_tokens"] == 4
            assert len(body["series"]["t"]) == 96 and body["step"] == 900
    finally:
        server.stop()


def test_feedback_and_moderation_reports(fresh):
    server, engine, http = fresh
    conv = http.post("/api/conversations", json={"title": "f"}).json()
    done = events_of(http.post(f"/api/conversations/{conv['id']}/messages", json={"content": "hi", "params": {"max_tokens": 2}}))
    reply = [e for e in done if e["type"] == "done"][-1]["message"]
    assert http.put(f"/api/messages/{reply['id']}/feedback", json={"rating": 1}).status_code == 200
    run = events_of(http.post("/api/templates/poem/run", json={"values": {"theme": "月"}, "params": {"max_tokens": 2}}))
    run_id = run[0]["run_id"]
    assert run[0]["type"] == "start" and run_id
    r = http.put(f"/api/templates/runs/{run_id}/feedback", json={"rating": -1, "comment": "flat"})
    assert r.status_code == 200 and r.json()["rating"] == -1 and r.json()["template"] == "poem"
    error_of(http.put("/api/templates/runs/nope/feedback", json={"rating": 1}), 404)
    error_of(http.put(f"/api/templates/runs/{run_id}/feedback", json={"rating": 2}), 422)
    events_of(http.post("/api/templates/poem/run", json={"values": {"theme": "风"}, "params": {"max_tokens": 1}}))
    ModerationLog(server.app.state.webapp.db).add({"source": "input", "model": SCRIPTED, "action": "block",
                                                   "categories": ["violence"], "scores": {"violence": 0.9}})

    body = http.get("/api/dashboard", params={"window": "1h"}).json()
    assert body["feedback"]["models"] == [{"model": SCRIPTED, "up": 1, "down": 0, "replies": 1, "positive_rate": 1.0}]
    poem = [t for t in body["feedback"]["templates"] if t["template"] == "poem"]
    assert poem == [{"template": "poem", "name": poem[0]["name"], "runs": 2, "up": 0, "down": 1, "positive_rate": 0.0}]
    assert poem[0]["name"]["en"] and poem[0]["name"]["zh"]
    moderation = body["moderation"]
    assert moderation["total"] == 1 and moderation["categories"] == {"violence": {"block": 1}}
    assert moderation["sources"] == {"input": 1} and sum(moderation["series"]) == 1

    assert http.delete(f"/api/templates/runs/{run_id}/feedback").status_code == 204
    body = http.get("/api/dashboard", params={"window": "1h"}).json()
    assert [t["down"] for t in body["feedback"]["templates"] if t["template"] == "poem"] == [0]


def test_bad_window_is_a_400(fresh):
    _, _, http = fresh
    error = error_of(http.get("/api/dashboard", params={"window": "2h"}), 400, "invalid_value")
    assert error["param"] == "window"
    error_of(http.get("/api/dashboard", params={"model": "m" * 201}), 400, "invalid_value")


def test_only_administrators_read_the_dashboard(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    users = UserStore(Database(url))
    users.add("alice", PASSWORD, admin=True)
    users.add("bob", PASSWORD)
    users.add("sam", PASSWORD, staff=True)
    server, _ = scripted_server(url)
    try:
        def login(name: str) -> httpx.Client:
            client = httpx.Client(base_url=server.url, timeout=30)
            assert client.post("/api/auth/login", json={"username": name, "password": PASSWORD}).status_code == 200
            return client

        with httpx.Client(base_url=server.url, timeout=30) as anon:
            error_of(anon.get("/api/dashboard"), 401)
        for name in ("bob", "sam"):
            with closing(login(name)) as c:
                error_of(c.get("/api/dashboard"), 403, "admin_only")
                run = events_of(c.post("/api/templates/poem/run", json={"values": {"theme": "月"},
                                                                         "params": {"max_tokens": 1}}))
                if name == "bob":
                    bobs_run = run[0]["run_id"]
        with closing(login("alice")) as c:
            assert c.get("/api/dashboard").status_code == 200
            error_of(c.put(f"/api/templates/runs/{bobs_run}/feedback", json={"rating": 1}), 404)  # bob's, not hers
    finally:
        server.stop()


def test_sketch_percentiles_are_within_four_percent():
    rng = random.Random(7)
    values = [rng.lognormvariate(-3, 1.2) for _ in range(5000)]
    sketch = Sketch()
    for v in values:
        sketch.add(v)
    values.sort()
    for q in (0.5, 0.9, 0.95, 0.99):
        exact = values[max(0, math.ceil(q * len(values)) - 1)]
        assert abs(sketch.quantile(q) - exact) / exact < 0.04, q
    assert sketch.count == 5000 and sketch.total == pytest.approx(sum(values))


def test_old_slices_are_pruned_and_idle_engines_write_nothing(tmp_path):
    from aigc.engine.protocol import EngineStats
    from aigc.server.history import MetricsHistory
    from aigc.server.request_log import RequestRecord

    db = Database(f"sqlite:///{tmp_path / 'h.db'}")
    now = [time.time() - 3 * 86400]
    busy = [EngineStats(running=0, queued=0, kv_slots_used=0, kv_slots_total=4, kv_tokens_used=9, kv_tokens_total=99)]
    history = MetricsHistory(lambda: db, lambda: [("m", busy[0])], retention_days=2, clock=lambda: now[0])
    history.observe(RequestRecord("a", "POST", "/v1/chat/completions", model="m", status=200, completion_tokens=3))
    history.sample()  # idle: no slice
    history.flush()
    now[0] += 3 * 86400
    busy[0] = EngineStats(running=2, queued=5, kv_slots_used=2, kv_slots_total=4, kv_tokens_used=50, kv_tokens_total=100)
    history.sample()
    history.observe(RequestRecord("b", "GET", "/api/conversations/9", status=404))  # the app's own 404: not counted
    history.flush()
    week = history.query("7d")
    assert week["models"]["m"]["requests"] == 1 and week["models"]["m"]["generation_tokens"] == 3
    assert week["models"]["m"]["waiting_max"] == 5 and week["models"]["m"]["kv_usage_max"] == 0.5
    history.prune()
    week = history.query("7d")
    assert week["models"]["m"]["requests"] == 0 and week["models"]["m"]["running_max"] == 2  # the old slice went
