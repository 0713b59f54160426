"""Tool calling: the output parser (re-chunked at every split point), the prompt for templates with
and without tools, and the official client against a real server: forced, required/parallel, auto,
streamed, a full round trip, and 400s."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pydantic
import pytest
from server_harness import REAL

from aigc.server.tools import ToolSpec, ToolStream, parse_tool_calls, prompt_messages, tool_spec

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 20}},
                                       "required": ["zone"], "additionalProperties": False}}}
SPEC = tool_spec([WEATHER, TIME], "auto", True)

OUTPUTS = [
    'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n'
    '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>',
    "No tools needed: 3 < 4 and <tool is not a call.",
    '<tool_call>\n{"name": "unknown_fn", "arguments": {}}\n</tool_call> trailing',
    '<tool_call>\n{"name": "get_time", "arguments": {"zone": "日本"}}\n</tool_call>',
    '<tool_call>\n{"name": "get_time", "arguments": {"zone": "cut',
    ' {"name": "get_weather", "parameters": {"city": "Oslo", "unit": "celsius"}}',  # Llama 3.1
    '<|python_tag|>{"name": "get_time", "parameters": {"zone": "UTC"}}',
    '[TOOL_CALLS] [{"name": "get_time", "arguments": {"zone": "A"}}, {"name": "get_time", "arguments": {}}]',
    '{"not": "a call"} is just JSON',
    "[1] A list that is text.",
]


def _assemble(pieces: list[str]) -> tuple[str, list[tuple[int, str, str]]]:
    stream = ToolStream(SPEC)
    events = []
    for p in pieces:
        events += stream.push(p)
    events += stream.finish()
    content = "".join(v for k, v in events if k == "content")
    calls = [(v["index"], v["function"]["name"], v["function"]["arguments"]) for k, v in events if k == "call"]
    return content, calls


@pytest.mark.parametrize("text", OUTPUTS)
def test_streamed_parsing_equals_whole_parsing_at_every_split(text):
    content, calls = parse_tool_calls(text, SPEC)
    expected_calls = [(i, c["function"]["name"], c["function"]["arguments"]) for i, c in enumerate(calls)]
    whole_content, whole_calls = _assemble([text])
    assert whole_calls == expected_calls
    assert (whole_content.strip() or None) == content if calls else (whole_content or None) == content
    for cut in range(1, len(text)):
        assert _assemble([text[:cut], text[cut:]]) == (whole_content, whole_calls), cut
    for a in range(1, len(text), 7):  # three pieces
        for b in range(a + 1, len(text), 11):
            assert _assemble([text[:a], text[a:b], text[b:]]) == (whole_content, whole_calls)


def test_what_the_parser_finds():
    content, calls = parse_tool_calls(OUTPUTS[0], SPEC)
    assert content == "Let me check."
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    assert len({c["id"] for c in calls}) == 2
    assert parse_tool_calls(OUTPUTS[1], SPEC) == (OUTPUTS[1], [])
    assert parse_tool_calls(OUTPUTS[2], SPEC)[1] == []  # not one of the tools: stays text
    assert parse_tool_calls(OUTPUTS[4], SPEC)[1] == []  # cut off: stays text
    llama = parse_tool_calls(OUTPUTS[5], SPEC)
    assert llama[0] is None and json.loads(llama[1][0]["function"]["arguments"]) == {"city": "Oslo", "unit": "celsius"}
    assert [c["function"]["name"] for c in parse_tool_calls(OUTPUTS[7], SPEC)[1]] == ["get_time", "get_time"]
    assert parse_tool_calls(OUTPUTS[8], SPEC) == (OUTPUTS[8], [])
    assert parse_tool_calls(OUTPUTS[9], SPEC) == (OUTPUTS[9], [])


def test_prompts_for_templates_with_and_without_tools():
    history = [{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"}]
    msgs, tools = prompt_messages(history, SPEC, knows_tools=True)
    assert tools == [{"type": "function", "function": f} for f in SPEC.functions]
    assert msgs[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris", "unit": "celsius"}
    msgs, tools = prompt_messages(history, SPEC, knows_tools=False)
    assert tools is None and msgs[0]["role"] == "system" and "get_weather" in msgs[0]["content"]
    assert "<tool_call>" in msgs[2]["content"] and '"city": "Paris"' in msgs[2]["content"]
    assert msgs[3] == {"role": "user", "content": "<tool_response>\n18 C, sunny\n</tool_response>"}


@pytest.fixture
def client(real_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=real_server.url + "/v1", api_key="none", max_retries=0)


ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def _valid_call(call, tools=(WEATHER, TIME)):
    schema = next(t["function"]["parameters"] for t in tools if t["function"]["name"] == call.function.name)
    jsonschema.validate(json.loads(call.function.arguments), schema)
    assert call.id.startswith("call_") and call.type == "function"


@pytest.mark.slow
def test_a_named_tool_choice_forces_a_valid_call(client):
    resp = client.chat.completions.create(
        model=REAL, messages=ASK, tools=[WEATHER, TIME], temperature=1.0, seed=3, max_tokens=100, n=3,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    for choice in resp.choices:
        assert choice.finish_reason == "tool_calls"
        assert [c.function.name for c in choice.message.tool_calls] == ["get_weather"]
        _valid_call(choice.message.tool_calls[0])


@pytest.mark.slow
def test_required_calls_are_valid_and_may_be_parallel(client):
    resp = client.chat.completions.create(model=REAL, messages=ASK, tools=[WEATHER, TIME], tool_choice="required",
                                          temperature=1.0, seed=5, max_tokens=160, n=4)
    for choice in resp.choices:
        if choice.finish_reason == "length":
            continue
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
        for call in choice.message.tool_calls:
            _valid_call(call)
    resp = client.chat.completions.create(model=REAL, messages=ASK, tools=[WEATHER, TIME], tool_choice="required",
                                          parallel_tool_calls=False, temperature=1.0, seed=5, max_tokens=100)
    assert len(resp.choices[0].message.tool_calls) == 1


@pytest.mark.slow
def test_streamed_tool_calls_have_index_id_and_name_first_and_exact_arguments(client):
    stream = client.chat.completions.create(
        model=REAL, messages=ASK, tools=[WEATHER], stream=True, temperature=1.0, seed=8, max_tokens=100,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for c in chunk.choices:
            for d in c.delta.tool_calls or []:
                if d.index not in calls:
                    assert d.id and d.function.name == "get_weather" and d.type == "function"
                    calls[d.index] = {"id": d.id, "args": ""}
                else:
                    assert d.id is None or d.id == calls[d.index]["id"]
                calls[d.index]["args"] += d.function.arguments or ""
            finish = c.finish_reason or finish
    assert finish == "tool_calls" and list(calls) == [0]
    jsonschema.validate(json.loads(calls[0]["args"]), WEATHER["function"]["parameters"])


@pytest.mark.slow
def test_a_full_round_trip(client):
    first = client.chat.completions.create(model=REAL, messages=ASK, tools=[WEATHER], max_tokens=100, temperature=0,
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = first.choices[0].message.tool_calls[0]
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
               {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"}]
    final = client.chat.completions.create(model=REAL, messages=history, tools=[WEATHER], max_tokens=40,
                                           temperature=0)
    assert final.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert final.choices[0].message.content or final.choices[0].message.tool_calls
    none = client.chat.completions.create(model=REAL, messages=ASK, tools=[WEATHER], tool_choice="none",
                                          max_tokens=20, temperature=0)
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason in ("stop", "length")


@pytest.mark.slow
@pytest.mark.parametrize("body, param", [
    ({"tools": [{"type": "function"}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}}, "tool_choice"),
])
def test_bad_tool_requests_are_400s(real_server, body, param):
    r = httpx.post(real_server.url + "/v1/chat/completions", timeout=60,
                   json={"model": REAL, "messages": ASK, "max_tokens": 5, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_tool_spec_defaults():
    spec = tool_spec([WEATHER], None, None)
    assert isinstance(spec, ToolSpec) and spec.choice == "auto" and spec.parallel and spec.parses
    assert tool_spec(None, "none", None) is None


class GetWeather(pydantic.BaseModel):
    city: str


@pytest.mark.slow
def test_the_clients_pydantic_tool_helper_and_no_runaway_calls(client):
    """`openai.pydantic_function_tool` + `chat.completions.parse`: forced ("required", one function)
    decoding ends after its one call even at temperature 0, and the arguments parse into the model."""
    resp = client.chat.completions.parse(model=REAL, messages=ASK, tools=[openai.pydantic_function_tool(GetWeather)],
                                         tool_choice="required", max_tokens=80, temperature=0)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
    assert isinstance(choice.message.tool_calls[0].function.parsed_arguments, GetWeather)
