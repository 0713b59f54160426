"""Request bodies of the web app's API (validated into 422s by app_http.read_body)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aigc.apps.chat.model import GenerationParams, ParamsIn


class ConversationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, max_length=200)
    system_prompt: str | None = Field(None, max_length=100_000)
    model: str | None = Field(None, max_length=200)
    params: ParamsIn | None = None
    knowledge_base_ids: list[int] | None = Field(None, max_length=10)  # answers grounded in these


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, max_length=200)
    params: ParamsIn | None = None


class MessageIn(ReplyIn):
    content: str = Field(min_length=1, max_length=200_000)


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Literal[1, -1]
    comment: str = Field("", max_length=4000)


def merged_params(stored: dict[str, Any] | None, given: ParamsIn | None) -> GenerationParams:
    values = dict(stored or {})
    if given is not None:
        values.update(given.model_dump(exclude_unset=True))
    return GenerationParams.from_dict(values)


class TemplateRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: dict[str, Any] = Field(default_factory=dict)
    model: str | None = Field(None, max_length=200)
    params: ParamsIn | None = None
    output: Literal["text", "json"] = "text"  # json: JSON output mode (templates that declare an output_schema)
    knowledge_base_ids: list[int] | None = Field(None, max_length=10)  # ground the run in these


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=100)
