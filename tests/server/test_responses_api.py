"""The Responses API through the official client on the bundled model: stateless, instructions,
streaming event order, text.format json_schema, function tools (forced, round trip with
function_call_output), previous_response_id (stored, retrievable, deletable), and 400/404s."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from server_harness import REAL

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 99}},
          "required": ["name", "age"], "additionalProperties": False}
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                          "required": ["city"], "additionalProperties": False}}


@pytest.fixture
def client(real_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=real_server.url + "/v1", api_key="none", max_retries=0)


@pytest.mark.slow
def test_stateless_text(client):
    r = client.responses.create(model=REAL, input="What is the capital of France?", temperature=0,
                                max_output_tokens=20, instructions="Answer in one short sentence.", store=False)
    assert r.object == "response" and r.id.startswith("resp_") and r.status in ("completed", "incomplete")
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.output_text and r.output_text == r.output[0].content[0].text
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    items = client.responses.create(model=REAL, temperature=0, max_output_tokens=5, store=False, input=[
        {"role": "user", "content": [{"type": "input_text", "text": "Say hi."}]}])
    assert items.output_text


@pytest.mark.slow
def test_max_output_tokens_makes_it_incomplete(client):
    r = client.responses.create(model=REAL, input="Write a long story.", max_output_tokens=3, temperature=0,
                                store=False)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"


@pytest.mark.slow
def test_streaming_events_come_in_order(client):
    types, deltas = [], []
    with client.responses.stream(model=REAL, input="Name a color.", temperature=0, max_output_tokens=60,
                                 store=False) as stream:
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] in ("response.completed", "response.incomplete")
    order = ["response.output_item.added", "response.content_part.added", "response.output_text.delta",
             "response.output_text.done", "response.content_part.done", "response.output_item.done"]
    positions = [types.index(t) for t in order]
    assert positions == sorted(positions)
    assert "".join(deltas) == final.output_text


@pytest.mark.slow
def test_text_format_json_schema(client):
    r = client.responses.create(model=REAL, input="Invent a person.", temperature=1.0, max_output_tokens=80,
                                store=False, text={"format": {"type": "json_schema", "name": "person",
                                                              "schema": PERSON, "strict": True}})
    jsonschema.validate(json.loads(r.output_text), PERSON)


@pytest.mark.slow
def test_function_tools_round_trip(client):
    r = client.responses.create(model=REAL, input="Weather in Paris?", tools=[WEATHER], temperature=0,
                                max_output_tokens=60, tool_choice={"type": "function", "name": "get_weather"})
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id.startswith("call_")
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER["parameters"])
    follow = client.responses.create(model=REAL, previous_response_id=r.id, tools=[WEATHER], temperature=0,
                                     max_output_tokens=30, input=[
                                         {"type": "function_call_output", "call_id": calls[0].call_id,
                                          "output": "18 degrees, sunny"}])
    assert follow.previous_response_id == r.id and follow.output


@pytest.mark.slow
def test_previous_response_id_continues_and_is_stored(client, real_server):
    first = client.responses.create(model=REAL, input="My name is Ada.", temperature=0, max_output_tokens=10)
    second = client.responses.create(model=REAL, input="What is my name?", previous_response_id=first.id,
                                     temperature=0, max_output_tokens=10)
    fresh = client.responses.create(model=REAL, input="What is my name?", temperature=0, max_output_tokens=10,
                                    store=False)
    assert second.usage.input_tokens > fresh.usage.input_tokens  # the first turn is in the prompt
    assert client.responses.retrieve(first.id).id == first.id
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=REAL, input="hi", previous_response_id=first.id, max_output_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(fresh.id)  # store=False keeps nothing


@pytest.mark.slow
@pytest.mark.parametrize("body, param", [
    ({"input": [{"type": "web_search_call"}]}, "input"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "nope"}}}},
     "response_format"),
])
def test_bad_requests_are_400s(real_server, body, param):
    r = httpx.post(real_server.url + "/v1/responses", timeout=60, json={"model": REAL, "max_output_tokens": 3, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
