"""Request and response bodies of the OpenAI API, as the official client sends and parses them.

Requests: the fields OpenAI documents, plus common sampling extensions (`top_k`, `min_p`,
`repetition_penalty`, `num_beams`, `stop_token_ids`, `ignore_eos`). Unknown fields are accepted and
ignored (new client versions send new optional fields); fields we know but cannot honour are
refused with a 400 by the routes. Ranges that are API policy (n, temperature <= 2, counts) are
checked here; the rest by `SamplingParams.validate`.
Responses follow the types in the `openai` package (`Completion`, `ChatCompletion`,
`CompletionUsage`, `Model`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aigc.generation.params import (
    MAX_LOGPROBS,
    MAX_N,
    MAX_STOP_STRINGS,
    InvalidParameterError,
    SamplingParams,
)

if TYPE_CHECKING:
    from aigc.generation.guided import GuidedDecoding

# ---------------------------------------------------------------------------- requests


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class SamplingRequest(BaseModel):
    """Fields shared by /v1/completions and /v1/chat/completions."""

    model_config = ConfigDict(extra="allow")

    model: str
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)  # what a 64-bit generator seed takes
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # Extensions (vLLM / Hugging Face semantics).
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    num_beams: int | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    # Structured outputs: OpenAI's response_format, and vLLM's guided_* extensions (one of them).
    response_format: dict[str, Any] | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_count(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are allowed, got {len(v)}")
        return v

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def structured_output(self) -> GuidedDecoding | None:
        """The structured output the request asks for: `response_format` (text, json_object,
        json_schema) or one of the guided_* extensions. Raises InvalidParameterError naming the
        parameter."""
        from aigc.generation.guided import GuidedDecoding  # brings torch: only when a request runs

        asked: list[GuidedDecoding] = []
        fmt = self.response_format
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
        if self.guided_json is not None:
            schema = self.guided_json
            if isinstance(schema, str):
                try:
                    schema = json.loads(schema)
                except json.JSONDecodeError as e:
                    raise InvalidParameterError(f"guided_json: not valid JSON ({e})") from None
            asked.append(GuidedDecoding.json_schema(schema, param="guided_json"))
        if self.guided_regex is not None:
            asked.append(GuidedDecoding.regex(self.guided_regex))
        if self.guided_choice is not None:
            asked.append(GuidedDecoding.choice(self.guided_choice))
        if self.guided_grammar is not None:
            asked.append(GuidedDecoding.grammar(self.guided_grammar))
        if len(asked) > 1:
            raise InvalidParameterError(f"{asked[1].param}: give one structured output "
                                        "(response_format or one guided_* parameter)")
        return asked[0] if asked else None

    def to_sampling_params(self, *, max_tokens: int, logprobs: int | None, vocab_size: int,
                           guided: GuidedDecoding | None = None) -> SamplingParams:
        """The engine's parameters for this request, validated. `guided`: a structured output
        the server imposes (a forced tool call); the request may not ask for another one.
        Raises InvalidParameterError naming the parameter."""
        values: dict[str, Any] = {
            "max_tokens": max_tokens, "n": self.n, "stop": self.stop, "seed": self.seed, "logprobs": logprobs,
            "ignore_eos": self.ignore_eos, "stop_token_ids": self.stop_token_ids, "logit_bias": self.logit_bias,
        }
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "top_k", "min_p",
                     "repetition_penalty", "num_beams"):
            value = getattr(self, name)
            if value is not None:
                values[name] = value
        asked = self.structured_output()
        if guided is not None and asked is not None:
            raise InvalidParameterError("A forced tool call (tool_choice) and a structured output "
                                        "(response_format, guided_*) cannot be combined.", "tool_choice")
        values["guided"] = guided or asked
        # a spec that does not compile is refused by Engine.submit, before any stream starts
        return SamplingParams(**values).validate(vocab_size=vocab_size)


class CompletionRequest(SamplingRequest):
    # A string, a list of strings, a list of token ids, or a list of token-id lists.
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    suffix: str | None = None
    best_of: int | None = None


class ChatCompletionRequest(SamplingRequest):
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    # Extensions: chat-template switches.
    add_generation_prompt: bool = True
    chat_template_kwargs: dict[str, Any] | None = None


class EmbeddingRequest(BaseModel):
    """POST /v1/embeddings."""

    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None



class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    tokens: list[int]


# ---------------------------------------------------------------------------- responses


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Usage:
        return cls(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   total_tokens=prompt_tokens + completion_tokens,
                   prompt_tokens_details=PromptTokensDetails(cached_tokens=cached_tokens))


# Chat logprobs: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}
class ChatTopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatTokenLogprob(ChatTopLogprob):
    top_logprobs: list[ChatTopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob] | None = None


# Completions logprobs: parallel lists.
class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None  # extension (vLLM): the stop string or token id that ended it


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ChatMessageOut(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields a remote adds pass through
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = None  # a reasoning model's thinking (vLLM's and DeepSeek's field)
    tool_calls: list[dict[str, Any]] | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "aigc"
    max_model_len: int | None = None  # extension (vLLM): context window served


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
