"""/metrics also speaks vLLM's names (`aigc:` for `vllm:`, label `model_name`), counting what our
own `aigc_*` names count: a Grafana board made for vLLM reads this server with the prefix changed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from server_harness import TINY, ServerThread, metric, tiny_app

PROMPT = "The same long prompt, twice, so that the second request finds it in the prefix cache. " * 3




def types(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


@pytest.fixture(scope="module")
def http(tmp_path_factory) -> Iterator[httpx.Client]:
    db = tmp_path_factory.mktemp("vllm-names") / "app.db"
    server = ServerThread(tiny_app(database_url=f"sqlite:///{db}")).start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client
    server.stop()


def test_vllm_names_count_what_ours_count(http):
    before = http.get("/metrics").text
    usages = []
    for stream in (False, True):
        body = {"model": TINY, "prompt": PROMPT, "max_tokens": 6, "temperature": 0, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
            r = http.post("/v1/completions", json=body)
            usages.append([line for line in r.text.splitlines() if '"usage":{' in line][-1])
        else:
            usages.append(http.post("/v1/completions", json=body).text)
    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    for _ in range(100):  # a stream is counted just after its last byte went out
        after = http.get("/metrics").text
        if grew("aigc_requests_total", model=TINY) == 2:
            break
        time.sleep(0.05)

    prompt = sum(int(re.search(r'"prompt_tokens":(\d+)', u)[1]) for u in usages)
    generated = sum(int(re.search(r'"completion_tokens":(\d+)', u)[1]) for u in usages)
    cached = sum(int(re.search(r'"cached_tokens":(\d+)', u)[1]) for u in usages)
    assert grew("aigc:prompt_tokens_total", model_name=TINY) == grew("aigc_prompt_tokens_total", model=TINY) == prompt
    assert grew("aigc:generation_tokens_total", model_name=TINY) == grew("aigc_generation_tokens_total", model=TINY) \
        == generated == 12
    assert grew("aigc:prefix_cache_queries_total", model_name=TINY) == prompt
    assert grew("aigc:prefix_cache_hits_total", model_name=TINY) == cached
    assert grew("aigc:time_to_first_token_seconds_count", model_name=TINY) == 2
    assert grew("aigc:time_to_first_token_seconds_sum", model_name=TINY) == pytest.approx(
        grew("aigc_time_to_first_token_seconds_sum", model=TINY))
    assert grew("aigc:inter_token_latency_seconds_count", model_name=TINY) == grew(
        "aigc_inter_token_latency_seconds_count", model=TINY) >= 2
    assert grew("aigc:e2e_request_latency_seconds_count", model_name=TINY) == 2
    assert grew("aigc:e2e_request_latency_seconds_bucket", model_name=TINY, le="+Inf") == 2
    for gauge in ("aigc:num_requests_running", "aigc:num_requests_waiting", "aigc:kv_cache_usage_perc"):
        assert f'{gauge}{{model_name="{TINY}"}}' in after, gauge
    assert metric(after, "aigc:num_requests_running", model_name=TINY) == 0  # all answered
    assert 0 <= metric(after, "aigc:kv_cache_usage_perc", model_name=TINY) <= 1


def test_vllm_names_have_vllm_types(http):
    declared = types(http.get("/metrics").text)
    for name in ("aigc:time_to_first_token_seconds", "aigc:inter_token_latency_seconds",
                 "aigc:e2e_request_latency_seconds"):
        assert declared[name] == "histogram", name
    for name in ("aigc:num_requests_running", "aigc:num_requests_waiting", "aigc:kv_cache_usage_perc"):
        assert declared[name] == "gauge", name
    for name in ("aigc:prompt_tokens_total", "aigc:generation_tokens_total", "aigc:prefix_cache_queries_total",
                 "aigc:prefix_cache_hits_total"):
        assert declared[name] == "counter", name
    for ours in ("aigc_requests_running", "aigc_time_to_first_token_seconds", "aigc_prompt_tokens_total"):
        assert ours in declared  # our own names stay
