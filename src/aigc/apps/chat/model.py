"""What the chat app needs from a model, whatever serves it (a local engine or a remote server).

The server adapts each entry of its backends registry to `ChatModel` (server/app_models.py), so
the app never sees HTTP, engines or tensors: it fits messages into the window and reads text (and
a reasoning model's thinking, as `Reasoning` pieces).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aigc.apps.chat.context import FittedContext


class ParamsIn(BaseModel):
    """What a client (the API, an imported transcript) may set: the API's own bounds."""

    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)


@dataclass
class GenerationParams:
    """The knobs the app's parameters panel exposes (stored per conversation)."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None
    json_schema: dict[str, Any] | None = None  # structured output: the reply is JSON valid against it

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GenerationParams:
        """Stored parameters; a value that is not valid (a database from before validation) is
        left out, so the default applies instead of every later reply failing."""
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__ and v is not None}
        schema = {k: v for k, v in known.items() if k in ParamsIn.model_fields}
        for key, value in schema.items():
            try:
                ParamsIn.model_validate({key: value})
            except ValidationError:
                del known[key]
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["json_schema"] is None:  # only studio runs in JSON mode set it
            del out["json_schema"]
        return out


@dataclass(frozen=True)
class Reasoning:
    """A piece of a reasoning model's thinking before its answer: streamed in order with the
    reply's text, shown and stored apart from it, and never sent back as the reply's content."""

    text: str


class ReplyStream(Protocol):
    """Text pieces of one reply (`Reasoning` pieces between them, from a reasoning model). After
    the loop: `finish_reason`, token counts."""

    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int

    def __aiter__(self) -> AsyncIterator[str | Reasoning]: ...

    def cancel(self) -> None:
        """Stop generating (frees the model's slot); the loop then ends. Safe twice or after the end."""
        ...


class ChatModel(Protocol):
    name: str
    window: int  # tokens per sequence: prompt + reply
    exact_tokens: bool  # counted with the model's own tokenizer (else estimated)

    def count_tokens(self, text: str) -> int: ...

    def fit(self, messages: list[dict[str, Any]], budget: int) -> FittedContext:
        """The messages that fit in `budget` prompt tokens (see context.fit_messages)."""
        ...

    async def stream(self, fitted: FittedContext, params: GenerationParams) -> ReplyStream:
        """Start generating; raises at once if the model cannot take the request (busy, bad params)."""
        ...


class ApproxTokenizer:
    """Token counts for a model whose tokenizer lives elsewhere (a remote server): about 3
    characters per token plus a few per message for the template. The meter says "≈" then."""

    exact = False

    def count_tokens(self, text: str) -> int:
        return (len(text) + 2) // 3

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
                            tokenize: bool = True) -> list[int]:
        n = sum(4 + self.count_tokens(str(m.get("content") or "")) for m in messages) + 3 * add_generation_prompt
        return [0] * n
