"""From an OpenAI request to what the engine takes: prompt token ids and `SamplingParams`.

Everything a client can get wrong is found here and answered with a 400 naming the parameter:
bad sampling values, an empty prompt, a prompt that does not fit the context window (never
truncated silently), features this server does not have.
"""

from __future__ import annotations

import json
from typing import Any

from aigc.chat_template import TemplateError
from aigc.generation.guided import GuidedDecoding
from aigc.generation.params import InvalidParameterError, SamplingParams
from aigc.server.backends import LocalBackend
from aigc.server.errors import APIError, bad_request
from aigc.server.schemas import ChatCompletionRequest, CompletionRequest, SamplingRequest
from aigc.server.tools import ToolSpec, forced_call_grammar, prompt_messages, template_knows_tools, tool_spec

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for the legacy completions endpoint

def fit_context(prompt_len: int, max_tokens: int | None, max_context: int, *, prompt_param: str,
                default: int | None = None) -> int:
    """Completion budget for a prompt: the requested max_tokens (or `default`, or the rest of the
    window). A prompt that leaves no room, or a request that does not fit, is a 400."""
    if prompt_len == 0:
        raise bad_request(f"The {prompt_param} is empty: nothing to complete.", param=prompt_param)
    room = max_context - prompt_len
    if room < 1:
        raise APIError(400, f"This model's maximum context length is {max_context} tokens, but the "
                       f"{prompt_param} has {prompt_len} tokens, leaving no room to generate. "
                       f"Shorten the {prompt_param}.", param=prompt_param, code="context_length_exceeded")
    if max_tokens is None:
        return room if default is None else min(default, room)
    if prompt_len + max_tokens > max_context:
        raise APIError(400, f"This model's maximum context length is {max_context} tokens. However, you "
                       f"requested {prompt_len + max_tokens} tokens ({prompt_len} in the {prompt_param}, "
                       f"{max_tokens} in the completion). Reduce the length of the {prompt_param} or "
                       "max_tokens.", param="max_tokens", code="context_length_exceeded")
    return max_tokens


def guided_decoding(req: SamplingRequest) -> GuidedDecoding | None:
    """The structured output a request asks for: `response_format` (text, json_object, json_schema)
    or one of the guided_* extensions. Raises InvalidParameterError naming the parameter."""
    asked: list[GuidedDecoding] = []
    fmt = req.response_format
    if fmt is not None:
        kind = fmt.get("type", "text") if isinstance(fmt, dict) else None
        if kind == "json_object":
            asked.append(GuidedDecoding.json_object())
        elif kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict):
                raise InvalidParameterError("response_format: json_schema needs a 'json_schema' object "
                                            "with 'name' and 'schema'")
            schema = spec.get("schema")
            asked.append(GuidedDecoding.json_object() if schema is None else GuidedDecoding.json_schema(schema))
        elif kind != "text":
            raise InvalidParameterError(f"response_format type {kind!r} is not supported "
                                        "(text, json_object, json_schema)")
    if req.guided_json is not None:
        schema = req.guided_json
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as e:
                raise InvalidParameterError(f"guided_json: not valid JSON ({e})") from None
        asked.append(GuidedDecoding.json_schema(schema, param="guided_json"))
    if req.guided_regex is not None:
        asked.append(GuidedDecoding.regex(req.guided_regex))
    if req.guided_choice is not None:
        asked.append(GuidedDecoding.choice(req.guided_choice))
    if req.guided_grammar is not None:
        asked.append(GuidedDecoding.grammar(req.guided_grammar))
    if len(asked) > 1:
        raise InvalidParameterError(f"{asked[1].param}: give one structured output "
                                    "(response_format or one guided_* parameter)")
    return asked[0] if asked else None


def sampling_params(req: SamplingRequest, *, max_tokens: int, logprobs: int | None, backend: LocalBackend,
                    guided: GuidedDecoding | None = None) -> SamplingParams:
    """`guided`: a structured output the server imposes (a forced tool call); the request may not
    ask for another one."""
    vocab_size = _vocab_size(backend)
    values: dict[str, Any] = {
        "max_tokens": max_tokens, "n": req.n, "stop": req.stop, "seed": req.seed, "logprobs": logprobs,
        "ignore_eos": req.ignore_eos, "stop_token_ids": req.stop_token_ids, "logit_bias": req.logit_bias,
    }
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "top_k", "min_p",
                 "repetition_penalty", "num_beams"):
        value = getattr(req, name)
        if value is not None:
            values[name] = value
    try:
        asked = guided_decoding(req)
        if guided is not None and asked is not None:
            raise InvalidParameterError("A forced tool call (tool_choice) and a structured output "
                                        "(response_format, guided_*) cannot be combined.", "tool_choice")
        values["guided"] = guided or asked
        # a spec that does not compile is refused by Engine.submit, before any stream starts
        return SamplingParams(**values).validate(vocab_size=vocab_size)
    except InvalidParameterError as e:
        raise bad_request(str(e), param=e.param, code="invalid_value") from None


def _vocab_size(backend: LocalBackend) -> int:
    return backend.tokenizer.vocab_size


# ---------------------------------------------------------------------------- /v1/completions


def completion_prompts(req: CompletionRequest, backend: LocalBackend) -> list[list[int]]:
    """The request's prompts as token-id lists (one per prompt of a batch)."""
    if req.suffix:
        raise bad_request("suffix is not supported.", param="suffix")
    if req.best_of is not None and req.best_of != req.n:
        raise bad_request("best_of is not supported (use n).", param="best_of")
    if req.echo and req.logprobs is not None:
        raise bad_request("echo together with logprobs is not supported: this server does not compute the "
                          "prompt's log-probabilities.", param="echo")
    prompt = req.prompt
    if isinstance(prompt, str):
        texts: list[str] | None = [prompt]
    elif prompt and all(isinstance(p, str) for p in prompt):
        texts = list(prompt)  # type: ignore[arg-type]
    else:
        texts = None
    if texts is not None:
        ids = [backend.tokenizer.encode(t, add_special_tokens=True) for t in texts]
    elif prompt and all(isinstance(p, int) for p in prompt):
        ids = [list(prompt)]  # type: ignore[arg-type]
    else:
        ids = [list(p) for p in prompt]  # type: ignore[union-attr]
    if not ids:
        raise bad_request("The prompt is empty: nothing to complete.", param="prompt")
    vocab = _vocab_size(backend)
    for i, p in enumerate(ids):
        bad = next((t for t in p if not 0 <= t < vocab), None)
        if bad is not None:
            raise bad_request(f"prompt[{i}] has token id {bad}, outside the vocabulary (size {vocab}).",
                              param="prompt")
    return ids


def completion_params(req: CompletionRequest, backend: LocalBackend, prompts: list[list[int]]) -> SamplingParams:
    budgets = [fit_context(len(p), req.max_tokens, backend.max_context, prompt_param="prompt",
                           default=COMPLETIONS_DEFAULT_MAX_TOKENS) for p in prompts]
    return sampling_params(req, max_tokens=min(budgets), logprobs=req.logprobs, backend=backend)


# ---------------------------------------------------------------------------- /v1/chat/completions


def chat_tools(req: ChatCompletionRequest) -> ToolSpec | None:
    return tool_spec(req.tools, req.tool_choice, req.parallel_tool_calls)


def chat_messages(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    if req.top_logprobs is not None and not req.logprobs:
        raise bad_request("top_logprobs requires logprobs=true.", param="top_logprobs")
    # OpenAI's newer "developer" role is the system prompt under another name.
    return [{**m, "role": "system"} if m.get("role") == "developer" else m for m in req.messages]


def chat_prompt(req: ChatCompletionRequest, backend: LocalBackend, spec: ToolSpec | None) -> list[int]:
    """The prompt's token ids; `spec`: the request's tools (chat_tools)."""
    tokenizer = backend.tokenizer
    # transformers' rule: a tokenizer with a "tool_use" template uses it when tools are given
    named = "tool_use" if spec is not None and "tool_use" in tokenizer.chat_templates else None
    source = tokenizer.chat_templates[named] if named else tokenizer.chat_template
    messages, tools = prompt_messages(chat_messages(req), spec, template_knows_tools(source))
    try:
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=req.add_generation_prompt, tokenize=True, tools=tools,
            template=named, **(req.chat_template_kwargs or {}),
        )
    except TemplateError as e:
        raise bad_request(str(e), param="messages") from None
    except TypeError as e:  # chat_template_kwargs naming a reserved argument, e.g. "messages"
        raise bad_request(f"chat_template_kwargs: {e}", param="chat_template_kwargs") from None
    return list(ids)  # type: ignore[arg-type]


def chat_params(req: ChatCompletionRequest, backend: LocalBackend, prompt: list[int],
                spec: ToolSpec | None) -> SamplingParams:
    if req.max_tokens is not None and req.max_completion_tokens is not None and req.max_tokens != req.max_completion_tokens:
        raise bad_request("max_tokens and max_completion_tokens disagree; send one of them.",
                          param="max_completion_tokens")
    requested = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    max_tokens = fit_context(len(prompt), requested, backend.max_context, prompt_param="messages")
    logprobs = (req.top_logprobs or 0) if req.logprobs else None
    forced = forced_call_grammar(spec) if spec is not None else None
    return sampling_params(req, max_tokens=max_tokens, logprobs=logprobs, backend=backend, guided=forced)
