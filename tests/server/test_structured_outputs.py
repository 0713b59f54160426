"""Structured outputs through the official client against a real server on the bundled model:
json_schema / json_object / guided_regex / guided_choice / guided_grammar, on chat and completions,
streamed and not, mixed with free requests, and clear 400s for specs that do not compile."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import jsonschema
import openai
import pydantic
import pytest
from server_harness import REAL

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 24},
                   "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"], "additionalProperties": False,
}
SCHEMAS = {
    "person": PERSON,
    "nested": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 20},
        "location": {"type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                                                      "lon": {"type": "number", "minimum": -180, "maximum": 180}},
                     "required": ["lat", "lon"], "additionalProperties": False}},
        "required": ["city", "location"], "additionalProperties": False},
    "array": {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 1, "maxItems": 4}},
        "required": ["tags"], "additionalProperties": False},
    "enum": {"type": "object", "properties": {
        "mood": {"enum": ["happy", "sad", "angry"]}, "score": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["mood", "score"], "additionalProperties": False},
    "optional": {"type": "object", "properties": {
        "title": {"type": "string", "maxLength": 30}, "done": {"type": "boolean"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["title", "done"], "additionalProperties": False},
}


@pytest.fixture
def client(real_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=real_server.url + "/v1", api_key="none", max_retries=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCHEMAS))
def test_json_schema_strict_validates_every_time_at_temperature_1(client, name):
    """10 generations per schema, 50 in all (two requests of n=5: the test server has 8 slots)."""
    schema = SCHEMAS[name]
    choices = []
    for seed in (7, 8):
        choices += client.chat.completions.create(
            model=REAL, messages=[{"role": "user", "content": f"Give me a {name} record as JSON."}], n=5,
            temperature=1.0, seed=seed, max_tokens=200,
            response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
        ).choices
    assert len(choices) == 10
    for choice in choices:
        assert choice.finish_reason == "stop", choice.message.content
        jsonschema.validate(json.loads(choice.message.content), schema)


@pytest.mark.slow
def test_json_object_and_completions_endpoint(client):
    resp = client.chat.completions.create(model=REAL, messages=[{"role": "user", "content": "Any JSON, please."}],
                                          response_format={"type": "json_object"}, n=4, temperature=1.0,
                                          seed=1, max_tokens=200)
    for choice in resp.choices:
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)
        else:
            assert choice.finish_reason == "length"
    done = client.completions.create(model=REAL, prompt="A person:", max_tokens=100, temperature=1.0, seed=2,
                                     extra_body={"response_format": {"type": "json_schema",
                                                                     "json_schema": {"name": "p", "schema": PERSON}}})
    assert done.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(done.choices[0].text), PERSON)


@pytest.mark.slow
def test_regex_choice_and_grammar(client):
    pattern = r"[A-Z][a-z]{2,8} (19|20)[0-9]{2}"
    resp = client.chat.completions.create(model=REAL, messages=[{"role": "user", "content": "A name and a year."}],
                                          n=6, temperature=1.0, seed=3, max_tokens=30,
                                          extra_body={"guided_regex": pattern})
    for choice in resp.choices:
        assert re.fullmatch(pattern, choice.message.content), choice.message.content
        assert choice.finish_reason == "stop"
    choices = ["positive", "negative", "neutral"]
    resp = client.chat.completions.create(model=REAL, messages=[{"role": "user", "content": "I love it! Sentiment?"}],
                                          n=6, temperature=1.0, seed=4, max_tokens=10,
                                          extra_body={"guided_choice": choices})
    assert all(c.message.content in choices for c in resp.choices)
    grammar = 'start: "yes" | "no" | "maybe"'
    resp = client.completions.create(model=REAL, prompt="Is the sky blue? Answer:", max_tokens=5, temperature=1.0,
                                     n=4, seed=5, extra_body={"guided_grammar": grammar})
    assert all(c.text in ("yes", "no", "maybe") for c in resp.choices)


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=24)
    age: int = pydantic.Field(ge=0, le=120)


@pytest.mark.slow
def test_the_official_clients_parse_helper(client):
    resp = client.chat.completions.parse(model=REAL, messages=[{"role": "user", "content": "Invent a person."}],
                                         response_format=Person, temperature=1.0, seed=11, max_tokens=120)
    person = resp.choices[0].message.parsed
    assert isinstance(person, Person) and 0 <= person.age <= 120


@pytest.mark.slow
def test_streamed_structured_output_concatenates_to_valid_json(client):
    stream = client.chat.completions.create(
        model=REAL, messages=[{"role": "user", "content": "A person as JSON."}], temperature=1.0, seed=9,
        max_tokens=120, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON, "strict": True}})
    parts, reasons = [], []
    for chunk in stream:
        for c in chunk.choices:
            parts.append(c.delta.content or "")
            reasons.append(c.finish_reason)
    assert reasons[-1] == "stop"
    jsonschema.validate(json.loads("".join(parts)), PERSON)


@pytest.mark.slow
def test_constrained_and_free_requests_share_the_engine(real_server):
    async def run():
        client = openai.AsyncOpenAI(base_url=real_server.url + "/v1", api_key="none", max_retries=0)
        free = client.chat.completions.create(model=REAL, messages=[{"role": "user", "content": "Say hello."}],
                                              temperature=1.0, seed=1, max_tokens=40, n=2)
        guided = client.chat.completions.create(
            model=REAL, messages=[{"role": "user", "content": "A person."}], temperature=1.0, seed=2, max_tokens=120,
            n=3, response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}})
        out = await asyncio.gather(free, guided)
        await client.close()
        return out

    free, guided = asyncio.run(run())
    assert all(c.message.content for c in free.choices)
    for c in guided.choices:
        jsonschema.validate(json.loads(c.message.content), PERSON)


@pytest.mark.slow
@pytest.mark.parametrize("body, param", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
     "response_format"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"guided_regex": "(unclosed"}, "guided_regex"),
    ({"guided_choice": []}, "guided_choice"),
    ({"guided_grammar": "start: undefined_rule"}, "guided_grammar"),
    ({"guided_regex": "a+", "guided_choice": ["a"]}, "guided_choice"),
    ({"response_format": {"type": "json_object"}, "num_beams": 2}, None),
])
def test_specs_that_do_not_compile_are_400s_naming_the_parameter(real_server, body, param):
    r = httpx.post(real_server.url + "/v1/chat/completions", timeout=60,
                   json={"model": REAL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["message"]
    if param is not None:
        assert error["param"] == param
