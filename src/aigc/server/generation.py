"""The one protocol every generative backend speaks: a request in, a stream of choice deltas out.

A local engine (local_backend.py) and a remote OpenAI-compatible server (remote.py) both take the
validated OpenAI request (`ChatCompletionRequest`, `CompletionRequest`) and return a
`GenerationStream` of `ChoiceDelta`s, already at the API's level: text, tool-call fragments,
log-probabilities in the endpoint's wire shape, finish reasons. Whatever goes wrong is an
`APIError` (status, message, `param`, `code`): raised by `chat()`/`complete()` before anything
streams (bad input 400, busy 429, unreachable 503), or by the iteration after it started. The
serving layer (serving.py) turns streams into OpenAI bodies and events; the web app reads the same
streams (app_models.py), so both reach a model the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from aigc.server.schemas import ChatCompletionRequest, CompletionRequest, ModelCard


@dataclass
class ChoiceDelta:
    """What one choice gained. `tool_calls` are OpenAI `delta.tool_calls` fragments (`index`; `id`,
    `type` and `function.name` in a call's first fragment; `function.arguments` pieces that
    concatenate to the final arguments). `logprobs`: chat -> a list of token entries (the
    `content` list); completions -> a fragment of the parallel lists (tokens, token_logprobs,
    top_logprobs, text_offset). `reasoning`: chat only, a reasoning model's thinking (reasoning.py;
    the API's `reasoning_content`), never part of `text`. `extra`: other delta fields a remote sent.
    `tokens`: completion tokens this delta carries (for time-to-first-token and throughput), of
    which `reasoning_tokens` were spent thinking."""

    index: int
    text: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    extra: dict[str, Any] | None = None
    tokens: int = 0
    reasoning: str = ""
    reasoning_tokens: int = 0


class GenerationStream(Protocol):
    """The deltas of every choice of one request, in arrival order. The token counts are final
    once the iteration ended (a remote's come from its usage report)."""

    choices: int  # how many choices the stream carries (n, or prompts x n for completions)
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int

    def __aiter__(self) -> AsyncIterator[ChoiceDelta]: ...

    def cancel(self) -> None:
        """Stop generating and free the model's slot; the iteration then ends. Idempotent."""
        ...


class GenerativeBackend(Protocol):
    name: str
    created: int
    max_context: int | None  # tokens per sequence, when this server knows it (a remote's it may not)
    exact_tokens: bool  # prompt tokens are counted with the model's own tokenizer

    def card(self) -> ModelCard: ...

    async def chat(self, req: ChatCompletionRequest, request_id: str) -> GenerationStream: ...

    async def complete(self, req: CompletionRequest, request_id: str) -> GenerationStream: ...
