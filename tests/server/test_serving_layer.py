"""One serving layer for every backend: a remote model gets the same answers, tool-call chunks,
Responses API and error handling as a local one, because both speak the generation protocol."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from server_harness import TINY, ServerThread, tiny_app

from aigc.server.app import create_app
from aigc.settings import Settings

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                   "required": ["city"], "additionalProperties": False}}}
FORCED = {"type": "function", "function": {"name": "get_weather"}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def servers():
    upstream = ServerThread(tiny_app(ctx=2048)).start()
    proxy = ServerThread(create_app(Settings(models=[], remotes=[f"far={upstream.url}/v1,model={TINY}"]))).start()
    yield (openai.OpenAI(base_url=upstream.url + "/v1", api_key="x", max_retries=0),
           openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0))
    proxy.stop()
    upstream.stop()


def test_forced_tool_call_through_a_remote_equals_direct(servers):
    direct, via = servers
    kw = dict(messages=ASK, tools=[WEATHER], tool_choice=FORCED, max_tokens=400, temperature=0)
    a = direct.chat.completions.create(model=TINY, **kw)
    b = via.chat.completions.create(model="far", **kw)
    assert a.choices[0].finish_reason == b.choices[0].finish_reason == "tool_calls"
    call_a, call_b = a.choices[0].message.tool_calls[0], b.choices[0].message.tool_calls[0]
    assert (call_b.function.name, call_b.function.arguments) == (call_a.function.name, call_a.function.arguments)
    assert json.loads(call_b.function.arguments)["city"] is not None

    chunks = list(via.chat.completions.create(model="far", stream=True, **kw))
    fragments = [t for c in chunks for t in (c.choices[0].delta.tool_calls or [])]
    assert fragments[0].id and fragments[0].function.name == "get_weather"
    assert "".join(f.function.arguments or "" for f in fragments) == call_a.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_responses_api_on_a_remote_that_speaks_only_chat(servers):
    direct, via = servers
    first = via.responses.create(model="far", input="Hello", max_output_tokens=6, temperature=0)
    expected = direct.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "Hello"}],
                                              max_tokens=6, temperature=0).choices[0].message.content
    assert first.model == "far" and first.output_text == expected
    assert first.usage.output_tokens == 6 and first.status == "incomplete"
    follow = via.responses.create(model="far", input="More", previous_response_id=first.id, max_output_tokens=4,
                                  temperature=0)
    assert follow.previous_response_id == first.id and follow.usage.input_tokens > first.usage.input_tokens
    with via.responses.stream(model="far", input="Hello", max_output_tokens=6, temperature=0) as stream:
        kinds = [e.type for e in stream]
    assert kinds[0] == "response.created" and kinds[-1] == "response.incomplete"
    assert "response.output_text.delta" in kinds


def _scripted_upstream(events: list[dict | str]) -> FastAPI:
    """An OpenAI-compatible upstream that streams `events` (dicts as JSON, strings as is)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: dict) -> StreamingResponse:
        async def body():
            for e in events:
                yield f"data: {json.dumps(e) if isinstance(e, dict) else e}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    return app


def _chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices,
            **({"usage": usage} if usage else {})}


SPLIT_CALL = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"reasoning_content": "Think"}), _chunk({"reasoning_content": "ing."}),
    _chunk({"tool_calls": [{"index": 0, "id": "call_up", "type": "function",
                            "function": {"name": "get_weather", "arguments": ""}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]}),
    _chunk({}, "tool_calls"),
    _chunk(None, usage={"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20}),
]


def _via(upstream_app: FastAPI):
    upstream = ServerThread(upstream_app).start()
    proxy = ServerThread(create_app(Settings(models=[], remotes=[f"up={upstream.url}/v1,model=m"]))).start()
    return upstream, proxy, openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)


def test_remote_fragments_are_joined_and_extra_fields_kept():
    upstream, proxy, client = _via(_scripted_upstream(SPLIT_CALL))
    try:
        reply = client.chat.completions.create(model="up", messages=ASK)
        message = reply.choices[0].message
        assert message.tool_calls[0].id == "call_up" and message.tool_calls[0].function.arguments == '{"city": "Oslo"}'
        assert message.reasoning_content == "Thinking."  # a field we do not know passes through
        assert reply.choices[0].finish_reason == "tool_calls" and reply.model == "up"
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (11, 9)  # the upstream's count
        chunks = list(client.chat.completions.create(model="up", messages=ASK, stream=True))
        args = [t.function.arguments for c in chunks for t in (c.choices[0].delta.tool_calls or [])]
        assert args == ["", '{"ci', 'ty": "Oslo"}']  # fragments relayed as they came
        assert all(c.model == "up" and c.usage is None for c in chunks)
    finally:
        proxy.stop()
        upstream.stop()


def test_remote_errors_mid_stream_reach_the_client_once():
    events = [_chunk({"content": "Hi"}), {"error": {"message": "upstream ran out of memory", "type": "server_error",
                                                     "code": "oom"}}]
    upstream, proxy, client = _via(_scripted_upstream(events))
    try:
        with pytest.raises(openai.APIError, match="out of memory"):
            list(client.chat.completions.create(model="up", messages=ASK, stream=True))
        with pytest.raises(openai.InternalServerError, match="out of memory"):  # not streamed: a 502
            client.chat.completions.create(model="up", messages=ASK)
    finally:
        proxy.stop()
        upstream.stop()
    upstream, proxy, client = _via(_scripted_upstream([_chunk({"content": "Hi"}), "{not json"]))
    try:
        r = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "up", "messages": ASK, "stream": True})
        data = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data: {")]
        assert data[-1]["error"]["code"] == "remote_error" and r.text.rstrip().endswith("data: [DONE]")
    finally:
        proxy.stop()
        upstream.stop()
