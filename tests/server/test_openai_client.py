"""The official `openai` client (sync and async) against a real server on the tiny random model."""

from __future__ import annotations

import asyncio

import openai
import pytest
from server_harness import TINY

CHAT = [{"role": "user", "content": "Say something."}]


@pytest.fixture
def client(tiny_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=tiny_server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
def aclient(tiny_server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=tiny_server.url + "/v1", api_key="unused", max_retries=0)


def greedy_chat(client, max_tokens=12, **kw) -> str:
    r = client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=max_tokens, temperature=0, **kw)
    return r.choices[0].message.content


def test_models_list(client):
    assert [m.id for m in client.models.list()] == [TINY]
    assert client.models.retrieve(TINY).id == TINY


def test_chat_completion_shape_and_usage(client):
    r = client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=6, temperature=0)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == TINY
    (choice,) = r.choices
    assert choice.index == 0 and choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens_details.cached_tokens >= 0


def test_max_completion_tokens_and_length(client):
    r = client.chat.completions.create(model=TINY, messages=CHAT, max_completion_tokens=3, temperature=0,
                                       extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"


def test_chat_stream_matches_non_stream(client):
    full = greedy_chat(client, extra_body={"ignore_eos": True})
    chunks = list(client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=12, temperature=0,
                                                 stream=True, extra_body={"ignore_eos": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == full
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)  # usage only when asked


def test_stream_usage_only_when_asked(client):
    chunks = list(client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=4, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    *body, last = chunks
    assert last.choices == [] and last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in body)


def test_n_choices(client):
    r = client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=8, n=2, temperature=1.0, seed=3,
                                       extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.content != r.choices[1].message.content  # sampled independently
    assert r.usage.completion_tokens == 16  # both choices counted, the prompt once
    chunks = list(client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=5, n=2, stream=True,
                                                 temperature=0))
    finished = sorted(c.choices[0].index for c in chunks if c.choices[0].finish_reason)
    assert finished == [0, 1]
    texts = ["".join(c.choices[0].delta.content or "" for c in chunks if c.choices[0].index == i) for i in (0, 1)]
    assert texts[0] == texts[1]  # greedy: both choices equal


def test_completions_list_prompt_and_n(client):
    r = client.completions.create(model=TINY, prompt=["hello", "world"], n=2, max_tokens=4, temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    alone = [client.completions.create(model=TINY, prompt=p, max_tokens=4, temperature=0).choices[0].text
             for p in ("hello", "world")]
    assert [c.text for c in r.choices] == [alone[0], alone[0], alone[1], alone[1]]
    assert r.usage.prompt_tokens == len("hello") + len("world")  # once per prompt, not per choice


def test_completions_default_max_tokens_is_16(client):
    r = client.completions.create(model=TINY, prompt="abc", temperature=0, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 16


def test_completions_token_prompt_and_echo(client, http):
    ids = http.post("/tokenize", json={"model": TINY, "prompt": "abc"}).json()["tokens"]
    by_text = client.completions.create(model=TINY, prompt="abc", max_tokens=5, temperature=0)
    by_ids = client.completions.create(model=TINY, prompt=ids, max_tokens=5, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    echoed = client.completions.create(model=TINY, prompt="abc", max_tokens=5, temperature=0, echo=True)
    assert echoed.choices[0].text == "abc" + by_text.choices[0].text
    chunks = list(client.completions.create(model=TINY, prompt="abc", max_tokens=5, temperature=0, echo=True,
                                            stream=True))
    assert chunks[0].choices[0].text == "abc"
    assert "".join(c.choices[0].text for c in chunks) == echoed.choices[0].text


def test_completions_stream(client):
    full = client.completions.create(model=TINY, prompt="xyz", max_tokens=8, temperature=0).choices[0].text
    chunks = list(client.completions.create(model=TINY, prompt="xyz", max_tokens=8, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == full
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_stop_strings_cut_and_never_leak(client):
    full = greedy_chat(client, max_tokens=20, extra_body={"ignore_eos": True})
    stop = full[5:7]
    expected = full[: full.index(stop)]
    r = client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=20, temperature=0, stop=[stop])
    assert r.choices[0].message.content == expected and r.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=20, temperature=0,
                                                 stop=stop, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == expected and stop not in streamed


def test_seed_reproducible(client):
    def sample(seed):
        r = client.completions.create(model=TINY, prompt="abc", max_tokens=16, temperature=1.0, seed=seed,
                                      extra_body={"ignore_eos": True})
        return r.choices[0].text

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_chat_logprobs_shape(client):
    r = client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=5, temperature=0, logprobs=True,
                                       top_logprobs=3, extra_body={"ignore_eos": True})
    content = r.choices[0].logprobs.content
    assert len(content) == 5
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3 and t.bytes == list(t.token.encode())
        assert max(a.logprob for a in t.top_logprobs) == pytest.approx(t.logprob)  # greedy picks the top one
    plain = client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=2, temperature=0)
    assert plain.choices[0].logprobs is None
    chunks = list(client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=4, temperature=0,
                                                 logprobs=True, top_logprobs=2, stream=True,
                                                 extra_body={"ignore_eos": True}))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert len(streamed) == 4 and all(len(t.top_logprobs) == 2 for t in streamed)


def test_completion_logprobs_shape(client):
    r = client.completions.create(model=TINY, prompt="abc", max_tokens=4, temperature=0, logprobs=2,
                                  extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4
    assert all(1 <= len(top) <= 3 for top in lp.top_logprobs)
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)


def test_typed_errors(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=CHAT)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=TINY, messages=CHAT, temperature=5)
    assert e.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=TINY, messages=CHAT, n=17)
    assert e.value.param == "n"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=TINY, prompt="a", top_p=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=TINY, prompt="a", max_tokens=0)
    assert e.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=TINY, messages=[{"role": "wizard", "content": "x"}])
    assert e.value.param == "messages"


def test_context_overflow_is_400_not_truncation(client):
    long_prompt = "a" * 600  # the tiny server's window is 512 tokens
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=TINY, prompt=long_prompt, max_tokens=1)
    assert e.value.code == "context_length_exceeded" and "512" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=TINY, prompt="a" * 500, max_tokens=100)
    assert e.value.param == "max_tokens"


def test_async_client(aclient):
    async def main():
        r = await aclient.chat.completions.create(model=TINY, messages=CHAT, max_tokens=4, temperature=0)
        stream = await aclient.completions.create(model=TINY, prompt="abc", max_tokens=4, temperature=0,
                                                  stream=True, stream_options={"include_usage": True},
                                                  extra_body={"ignore_eos": True})
        chunks = [c async for c in stream]
        with pytest.raises(openai.NotFoundError):
            await aclient.completions.create(model="nope", prompt="a")
        return r, chunks

    r, chunks = asyncio.run(main())
    assert r.choices[0].message.content is not None and r.usage.completion_tokens > 0
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
