"""From an OpenAI request to what the engine takes: prompt token ids and `SamplingParams`.

Everything a client can get wrong is found here and answered with a 400 naming the parameter:
bad sampling values, an empty prompt, a prompt that does not fit the context window (never
truncated silently), features this server does not have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aigc.chat_template import TemplateError
from aigc.generation.params import InvalidParameterError, SamplingParams
from aigc.server.errors import APIError, bad_request
from aigc.server.schemas import ChatCompletionRequest, CompletionRequest, SamplingRequest
from aigc.server.tools import ToolSpec, forced_call_grammar, prompt_messages, template_knows_tools, tool_spec

if TYPE_CHECKING:
    from aigc.generation.guided import GuidedDecoding
    from aigc.server.local_backend import LocalBackend

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


def sampling_params(req: SamplingRequest, *, max_tokens: int, logprobs: int | None, backend: LocalBackend,
                    guided: GuidedDecoding | None = None) -> SamplingParams:
    """The request's own conversion (`to_sampling_params`), its mistakes as 400s naming the parameter."""
    try:
        return req.to_sampling_params(max_tokens=max_tokens, logprobs=logprobs, vocab_size=_vocab_size(backend),
                                      guided=guided)
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


def prompt_texts(req: CompletionRequest, count: int) -> list[str | None]:
    """The prompts as text where the client sent text (what `echo` repeats), else None each."""
    if isinstance(req.prompt, str):
        return [req.prompt]
    if req.prompt and all(isinstance(p, str) for p in req.prompt):
        return list(req.prompt)  # type: ignore[arg-type]
    return [None] * count


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
