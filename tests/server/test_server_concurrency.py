"""Concurrency on a real server: independent simultaneous streams, 429 when full, disconnects free slots."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from server_harness import TINY, ServerThread, tiny_app
from test_http_endpoints import error_of, metric

PROMPTS = [f"Request number {i}: {'xyz' * i}" for i in range(8)]


def test_eight_simultaneous_streams_match_solo_runs(tiny_server):
    client = openai.AsyncOpenAI(base_url=tiny_server.url + "/v1", api_key="x", max_retries=0)

    async def stream(prompt: str) -> str:
        s = await client.completions.create(model=TINY, prompt=prompt, max_tokens=12, temperature=0, stream=True,
                                            extra_body={"ignore_eos": True})
        return "".join([c.choices[0].text async for c in s])

    async def main():
        solo = [await stream(p) for p in PROMPTS]
        together = await asyncio.gather(*(stream(p) for p in PROMPTS))
        return solo, together

    solo, together = asyncio.run(main())
    assert together == solo
    assert len(set(solo)) > 1  # the prompts really lead to different outputs


@pytest.fixture(scope="module")
def one_slot_server():
    """One KV slot and no queue: a second concurrent request is refused."""
    server = ServerThread(tiny_app(max_concurrency=1, max_queue=0, ctx=8192)).start()
    yield server
    server.stop()


def _long_stream_body(**extra) -> dict:
    return {"model": TINY, "prompt": "abc", "max_tokens": 8000, "temperature": 0, "stream": True,
            "ignore_eos": True, **extra}


def _wait_idle(c: httpx.Client, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = c.get("/metrics").text
        if metric(text, "aigc_requests_running", model=TINY) == 0 and metric(text, "aigc_requests_waiting") == 0:
            return text
        assert time.monotonic() < deadline, "the engine never freed the slot"
        time.sleep(0.05)


def test_queue_full_is_429_with_retry_after(one_slot_server):
    url = one_slot_server.url
    with httpx.Client(base_url=url, timeout=30) as c:
        with c.stream("POST", "/v1/completions", json=_long_stream_body()) as busy:
            lines = busy.iter_lines()  # kept: a dropped iterator closes the response
            next(lines)  # the slot is taken
            r = c.post("/v1/chat/completions", json={"model": TINY, "messages": [{"role": "user", "content": "x"}]})
            assert error_of(r, 429)["code"] == "rate_limit_exceeded"
            assert int(r.headers["retry-after"]) >= 1
            client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.RateLimitError):
                client.completions.create(model=TINY, prompt="x", max_tokens=2)
            assert next(ln for ln in lines if ln).startswith("data: {")  # the busy stream goes on
        _wait_idle(c)


def test_disconnected_stream_frees_its_slot(one_slot_server):
    with httpx.Client(base_url=one_slot_server.url, timeout=30) as c:
        before = c.get("/metrics").text
        with c.stream("POST", "/v1/completions", json=_long_stream_body()) as r:
            lines = r.iter_lines()
            next(lines)
            assert metric(c.get("/metrics").text, "aigc_requests_running", model=TINY) == 1
        # The client hung up after one chunk of an 8000-token request.
        text = _wait_idle(c)
        closed = metric(text, "aigc_requests_total", status="499") - metric(before, "aigc_requests_total", status="499")
        assert closed == 1
        generated = metric(text, "aigc_generation_tokens_total") - metric(before, "aigc_generation_tokens_total")
        assert generated < 8000
        r = c.post("/v1/completions", json={"model": TINY, "prompt": "a", "max_tokens": 2})
        assert r.status_code == 200  # the slot is free again


def test_disconnect_while_waiting_for_a_non_streamed_answer(one_slot_server):
    async def main() -> str:
        async with httpx.AsyncClient(base_url=one_slot_server.url, timeout=30) as c:
            before = (await c.get("/metrics")).text
            task = asyncio.create_task(c.post("/v1/completions", json={**_long_stream_body(), "stream": False}))
            for _ in range(200):
                await asyncio.sleep(0.02)
                if metric((await c.get("/metrics")).text, "aigc_requests_running", model=TINY) == 1:
                    break
            task.cancel()  # closes the connection mid-request
            with pytest.raises(asyncio.CancelledError):
                await task
            return before

    before = asyncio.run(main())
    with httpx.Client(base_url=one_slot_server.url, timeout=30) as c:
        text = _wait_idle(c)
    assert metric(text, "aigc_requests_total", status="499") - metric(before, "aigc_requests_total", status="499") == 1
    assert metric(text, "aigc_generation_tokens_total") - metric(before, "aigc_generation_tokens_total") < 8000
