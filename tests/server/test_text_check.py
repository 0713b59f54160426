"""A lone UTF-16 surrogate escape in any text of a request is a 400 naming the field, on every route;
surrogate pairs (emoji) are text and pass."""

from __future__ import annotations

import pytest
from server_harness import TINY

from aigc.server.text_check import lone_surrogate_field

LONE = '"hi \\udcff there"'


@pytest.mark.parametrize("path, body, field", [
    ("/v1/chat/completions", f'{{"model": "{TINY}", "messages": [{{"role": "user", "content": {LONE}}}]}}',
     "messages"),
    ("/v1/completions", f'{{"model": "{TINY}", "prompt": {LONE}, "max_tokens": 2}}', "prompt"),
    ("/v1/completions", f'{{"model": "{TINY}", "prompt": "ok", "stop": [{LONE}]}}', "stop"),
    ("/v1/embeddings", f'{{"model": "{TINY}", "input": [{LONE}]}}', "input"),
    ("/tokenize", f'{{"model": "{TINY}", "prompt": {LONE}}}', "prompt"),
])
def test_lone_surrogates_are_400s_naming_the_field(http, path, body, field):
    r = http.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == field and "surrogate" in error["message"]


def test_surrogate_pairs_are_text(http):
    body = f'{{"model": "{TINY}", "prompt": "smile \\ud83d\\ude00", "max_tokens": 2}}'
    r = http.post("/v1/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


def test_the_scan_only_parses_bodies_that_spell_a_surrogate():
    assert lone_surrogate_field(b'{"a": "plain"}') is None
    assert lone_surrogate_field(b'{"a": {"b": ["\\uDFFF"]}}') == "a"
    assert lone_surrogate_field(b'not json \\ud800') is None
