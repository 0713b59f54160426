"""Chat-template rendering: the one code path that turns chat messages into a prompt string.

The server, the CLI chat and SFT masking all render through `render_chat`, so a model sees the
same text in training and in serving. Rendering follows `transformers`' `apply_chat_template`:

- a sandboxed, immutable Jinja2 environment with `trim_blocks=True`, `lstrip_blocks=True` and
  the `loopcontrols` extension (`{% break %}`, `{% continue %}`);
- a `tojson` filter that keeps non-ASCII text as is (`ensure_ascii=False`) and accepts `indent`,
  `separators` and `sort_keys` (Jinja's own filter HTML-escapes, which templates do not expect);
- globals `raise_exception(message)` (raises `TemplateError`) and `strftime_now(format)`;
- template variables `messages`, `tools`, `documents`, `add_generation_prompt`, the special-token
  strings (`bos_token`, `eos_token`, ...) and any extra keyword the caller passes.

Unlike `transformers`, messages are validated first and OpenAI-style content-part lists are joined
into one string, so templates written for plain-string content work with every client.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.sandbox

ROLES = ("system", "user", "assistant", "tool")

# Used when a tokenizer ships no template: plain ChatML, no default system prompt.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Names a message's reasoning text travels under; transformers fills all of them from any one,
# because templates differ in which one they read.
_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")


class TemplateError(ValueError):
    """Bad messages, a broken template, or a template that called `raise_exception`."""


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@functools.lru_cache(maxsize=64)
def compile_template(template: str) -> jinja2.Template:
    """Compile (once; cached by the template text) a chat template. Raises `TemplateError`."""
    if not isinstance(template, str) or not template:
        raise TemplateError("a chat template must be a non-empty string")
    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"chat template syntax error at line {e.lineno}: {e.message}") from e


def _content_to_text(content: Any, where: str) -> str:
    """A message's content as one string: OpenAI clients may send a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise TemplateError(
                    f"{where}.content[{j}]: only text parts {{'type': 'text', 'text': str}} are supported, got {kind!r}"
                )
            texts.append(part["text"])
        return "\n".join(texts)
    raise TemplateError(f"{where}.content must be a string or a list of text parts, got {type(content).__name__}")


def validate_messages(messages: Any) -> list[dict[str, Any]]:
    """Check chat messages and return plain-dict copies ready for a template.

    Each message needs `role` in system|user|assistant|tool and `content`: a string or a list of
    `{"type": "text", "text": ...}` parts (joined with "\\n"). An assistant message that carries
    `tool_calls` may have `content` None or missing (kept as None, as OpenAI sends it). Other keys
    (`name`, `tool_calls`, `tool_call_id`, reasoning fields) pass through unchanged; a reasoning
    text given under one of `reasoning_content`/`thinking`/`reasoning` is copied to the other two
    names, as transformers does. The caller's objects are never modified.
    """
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise TemplateError(f"messages must be a list of dicts, got {type(messages).__name__}")
    if not messages:
        raise TemplateError("messages must not be empty")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise TemplateError(f"{where} must be a dict with 'role' and 'content', got {type(message).__name__}")
        role = message.get("role")
        if role not in ROLES:
            raise TemplateError(f"{where}.role must be one of {', '.join(ROLES)}; got {role!r}")
        msg = dict(message)
        content = msg.get("content")
        if content is None and role == "assistant" and msg.get("tool_calls"):
            msg["content"] = None
        elif "content" not in msg:
            raise TemplateError(f"{where} has no 'content'")
        else:
            msg["content"] = _content_to_text(content, where)
        reasoning = next((msg[k] for k in _REASONING_KEYS if msg.get(k) is not None), None)
        if reasoning is not None:
            msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
        out.append(msg)
    return out


def render_chat(
    template: str,
    messages: Any,
    *,
    add_generation_prompt: bool,
    bos_token: str | None = None,
    eos_token: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> str:
    """Render `messages` with a Jinja chat `template`, exactly as transformers' `apply_chat_template`
    (tokenize=False) renders it.

    Args:
        template: the Jinja source (compiled once and cached).
        messages: see `validate_messages`.
        add_generation_prompt: end with the header that opens an assistant turn.
        bos_token, eos_token: special-token strings the template may use; a None value is left
            undefined in the template (as transformers leaves unset tokens out).
        tools: JSON-schema tool definitions (list of dicts) for templates with a tools branch.
        **extra: more template variables (e.g. `unk_token`, `pad_token`, `enable_thinking`);
            None values are passed through as None.

    Raises:
        TemplateError: invalid messages/tools, a template syntax error, a template that called
            `raise_exception`, or any other error raised while rendering.
    """
    compiled = compile_template(template)
    chat = validate_messages(messages)
    if tools is not None and (
        not isinstance(tools, Sequence) or not all(isinstance(t, Mapping) for t in tools)
    ):
        raise TemplateError("tools must be a list of JSON-schema dicts")
    variables: dict[str, Any] = {k: v for k, v in (("bos_token", bos_token), ("eos_token", eos_token)) if v is not None}
    variables.update(extra)
    try:
        return compiled.render(
            messages=chat,
            tools=[dict(t) for t in tools] if tools is not None else None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **variables,
        )
    except TemplateError:
        raise
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise TemplateError(f"chat template failed to render: {type(e).__name__}: {e}") from e
