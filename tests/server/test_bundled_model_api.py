"""Acceptance: the official `openai` client against a real server running the bundled SmolLM2 model."""

from __future__ import annotations

import asyncio

import openai
import pytest
from server_harness import REAL

pytestmark = pytest.mark.slow


def ask(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


FRANCE = ask("What is the capital of France?")
POEM = ask("Write a short poem about the sea.")


@pytest.fixture
def client(real_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=real_server.url + "/v1", api_key="x", max_retries=0)


@pytest.fixture
def aclient(real_server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=real_server.url + "/v1", api_key="x", max_retries=0)


def test_health_was_503_while_loading(real_server):
    assert real_server.health_while_loading == 503


def test_capital_of_france(client):
    r = client.chat.completions.create(model=REAL, messages=FRANCE, temperature=0, max_tokens=12)
    assert "Paris" in r.choices[0].message.content
    assert r.usage.prompt_tokens > 10 and r.usage.completion_tokens > 0


def test_stream_equals_non_stream_and_usage_only_when_asked(client):
    full = client.chat.completions.create(model=REAL, messages=POEM, temperature=0, max_tokens=10)
    chunks = list(client.chat.completions.create(model=REAL, messages=POEM, temperature=0, max_tokens=10, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == full.choices[0].message.content
    assert all(c.usage is None for c in chunks)
    chunks = list(client.chat.completions.create(model=REAL, messages=POEM, temperature=0, max_tokens=10, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


def test_stop_string_never_leaks(client):
    full = client.chat.completions.create(model=REAL, messages=POEM, temperature=0, max_tokens=16)
    text = full.choices[0].message.content
    words = text.split()
    stop = words[len(words) // 2]
    expected = text[: text.index(stop)]
    r = client.chat.completions.create(model=REAL, messages=POEM, temperature=0, max_tokens=16, stop=[stop])
    assert r.choices[0].message.content == expected and r.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model=REAL, messages=POEM, temperature=0, max_tokens=16, stop=stop,
                                                 stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == expected and stop not in streamed


def test_n_and_seed(client):
    def sample(seed):
        r = client.chat.completions.create(model=REAL, messages=POEM, temperature=1.0, max_tokens=8, n=2, seed=seed)
        return [c.message.content for c in r.choices], r

    first, r = sample(1234)
    assert [c.index for c in r.choices] == [0, 1] and first[0] != first[1]
    assert sample(1234)[0] == first
    completion = client.completions.create(model=REAL, prompt=["The sea is", "The sky is"], n=2, max_tokens=4,
                                           temperature=0.9, seed=5)
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]


def test_logprobs(client):
    r = client.chat.completions.create(model=REAL, messages=FRANCE, temperature=0, max_tokens=4, logprobs=True,
                                       top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content) == r.choices[0].message.content
    assert all(len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token for t in content)
    c = client.completions.create(model=REAL, prompt="The capital of France is", max_tokens=3, temperature=0, logprobs=2)
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 3
    assert "".join(lp.tokens) == c.choices[0].text


def test_errors_are_typed(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=REAL, prompt="word " * 3000, max_tokens=4)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=FRANCE)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=REAL, messages=FRANCE, top_p=1.5)


def test_eight_concurrent_streams_match_solo_runs(aclient):
    questions = ["What is the capital of France?", "Name a color.", "What is 2+2?", "Say hello.",
                 "Name an animal.", "What is the sea?", "Name a fruit.", "Who wrote Hamlet?"]

    async def stream(q: str) -> str:
        s = await aclient.chat.completions.create(model=REAL, messages=ask(q), temperature=0, max_tokens=8,
                                                  stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in s])

    async def main():
        together = await asyncio.gather(*(stream(q) for q in questions))
        solo = [await stream(q) for q in questions]
        return solo, together

    solo, together = asyncio.run(main())
    assert together == solo and len(set(solo)) == len(solo)
