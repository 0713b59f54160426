"""Chat-template rendering: parity with transformers' apply_chat_template, validation, filters."""

from __future__ import annotations

import copy
import datetime

import pytest
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import models

from aigc.chat_template import (
    DEFAULT_CHAT_TEMPLATE,
    TemplateError,
    compile_template,
    render_chat,
    validate_messages,
)

# Qwen2.5's ChatML template (default system prompt when none is given), including its tools branch.
QWEN25_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

SYSTEM = {"role": "system", "content": "你是一个诗人。Answer briefly."}
TURNS = [
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hi, how can I help?"},
    {"role": "user", "content": "写一首关于月亮的诗 🌙"},
]
CONVERSATIONS = {
    "single": TURNS[:1],
    "multi": TURNS,
    "system_single": [SYSTEM, *TURNS[:1]],
    "system_multi": [SYSTEM, *TURNS],
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "天气 for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_CHAT = [
    {"role": "user", "content": "Weather in 北京?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "北京"}}}],
    },
    {"role": "tool", "content": '{"temp": 21}'},
    {"role": "tool", "content": '{"humidity": 0.4}'},
]


@pytest.fixture(scope="module")
def hf_qwen():
    transformers = pytest.importorskip("transformers")
    backend = BackendTokenizer(models.WordLevel({"<unk>": 0, "<|endoftext|>": 1, "<|im_end|>": 2}, unk_token="<unk>"))
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, chat_template=QWEN25_TEMPLATE, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_qwen_template_matches_transformers(hf_qwen, name, add_generation_prompt):
    messages = CONVERSATIONS[name]
    expected = hf_qwen.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    ours = render_chat(
        QWEN25_TEMPLATE, messages, add_generation_prompt=add_generation_prompt,
        eos_token="<|im_end|>", pad_token="<|endoftext|>",
    )
    assert ours == expected
    assert ("You are Qwen, created by Alibaba Cloud." in ours) == (not name.startswith("system"))
    assert ours.endswith("<|im_start|>assistant\n") == add_generation_prompt


def test_qwen_tools_branch_matches_transformers(hf_qwen):
    expected = hf_qwen.apply_chat_template(TOOL_CHAT, tools=[WEATHER_TOOL], tokenize=False, add_generation_prompt=True)
    ours = render_chat(QWEN25_TEMPLATE, TOOL_CHAT, add_generation_prompt=True, tools=[WEATHER_TOOL])
    assert ours == expected
    assert '"city": "北京"' in ours  # tojson keeps non-ASCII text


def test_content_parts_are_joined():
    parts = [{"role": "user", "content": [{"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}]}]
    plain = [{"role": "user", "content": "line one\nline two"}]
    assert render_chat(DEFAULT_CHAT_TEMPLATE, parts, add_generation_prompt=True) == render_chat(
        DEFAULT_CHAT_TEMPLATE, plain, add_generation_prompt=True
    )


def test_default_chatml_template():
    text = render_chat(DEFAULT_CHAT_TEMPLATE, [SYSTEM, TURNS[0]], add_generation_prompt=True)
    assert text == (
        f"<|im_start|>system\n{SYSTEM['content']}<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    )
    assert not render_chat(DEFAULT_CHAT_TEMPLATE, TURNS[:1], add_generation_prompt=False).endswith("assistant\n")


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ("hello", "list of dicts"),
        ([], "empty"),
        (["hi"], "messages[0] must be a dict"),
        ([{"role": "bot", "content": "x"}], "messages[0].role"),
        ([{"role": "user"}], "no 'content'"),
        ([{"role": "user", "content": 5}], "string or a list"),
        ([{"role": "user", "content": None}], "string or a list"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "image_url"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": [{"type": "text"}]}], "messages[1].content[0]"),
    ],
)
def test_invalid_messages_raise_template_error(messages, fragment):
    with pytest.raises(TemplateError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        render_chat(DEFAULT_CHAT_TEMPLATE, messages, add_generation_prompt=True)


def test_validate_does_not_modify_input_and_aliases_reasoning():
    messages = [{"role": "assistant", "content": [{"type": "text", "text": "ok"}], "reasoning": "because"}]
    before = copy.deepcopy(messages)
    out = validate_messages(messages)
    assert messages == before
    assert out[0]["content"] == "ok"
    assert out[0]["reasoning_content"] == out[0]["thinking"] == "because"


def test_raise_exception_becomes_template_error():
    template = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be user') }}{% endif %}ok"
    assert render_chat(template, TURNS[:1], add_generation_prompt=False) == "ok"
    with pytest.raises(TemplateError, match="first message must be user"):
        render_chat(template, [SYSTEM], add_generation_prompt=False)


def test_syntax_and_render_errors_are_template_errors():
    with pytest.raises(TemplateError, match="syntax error"):
        compile_template("{% for m in messages %}")
    with pytest.raises(TemplateError, match="render"):
        render_chat("{{ messages[0]['content'] + 1 }}", TURNS[:1], add_generation_prompt=False)
    with pytest.raises(TemplateError):  # the sandbox blocks attribute tricks
        render_chat("{{ messages.__class__.__mro__ }}", TURNS[:1], add_generation_prompt=False)


def test_tojson_filter_options():
    template = "{{ messages[0] | tojson }}|{{ messages[0] | tojson(indent=2) }}|{{ {'b': 1, 'a': '<&>'} | tojson(sort_keys=True) }}"
    out = render_chat(template, [{"role": "user", "content": "月"}], add_generation_prompt=False)
    first, indented, sorted_ = out.split("|")
    assert first == '{"role": "user", "content": "月"}'
    assert indented == '{\n  "role": "user",\n  "content": "月"\n}'
    assert sorted_ == '{"a": "<&>", "b": 1}'  # no HTML escaping


def test_globals_and_trim_blocks():
    year = str(datetime.datetime.now().year)
    template = "{% for m in messages %}\n  {% if loop.index > 1 %}{% break %}{% endif %}\n{{ m.role }}\n{% endfor %}{{ strftime_now('%Y') }}"
    assert render_chat(template, TURNS, add_generation_prompt=False) == f"user\n{year}"


def test_extra_variables_and_missing_special_tokens():
    template = "[{{ bos_token }}][{{ eos_token }}][{{ enable_thinking }}]"
    assert render_chat(template, TURNS[:1], add_generation_prompt=False, enable_thinking=False) == "[][][False]"
    assert render_chat(template, TURNS[:1], add_generation_prompt=False, bos_token="<s>") == "[<s>][][]"


def test_compiled_templates_are_cached():
    assert compile_template(QWEN25_TEMPLATE) is compile_template(QWEN25_TEMPLATE)
