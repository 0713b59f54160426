"""Compare and arena routes: one prompt to two models at once, streamed side by side.

    POST /api/compare                       {messages|prompt, models: [a, b], params} -> events (SSE)
    POST /api/arena/battles                 {messages|prompt, models?, params}       -> events (SSE), blind
    GET  /api/arena/battles/{id}            the battle (names hidden until voted, when blind)
    POST /api/arena/battles/{id}/vote       {winner: a|b|tie|both_bad} -> the battle, names revealed
    GET  /api/arena/leaderboard             Elo standings: arena votes, then chat ratings of regenerated
                                            replies that two different models wrote

Events: {"type": "battle", "id", "blind", "models" (null when blind)}, then per side ("side": 0 | 1)
"delta" {text}, "reasoning" {text}, "done" {finish_reason, completion_tokens}; one side's error is
{"type": "error", "side", "error"} and the other side goes on. Both models start before the first
event, so a refused request (429, 503) is an HTTP error, not a half battle. A compare is stored as a
battle too (not blind), so a side-by-side reading can be voted on as well.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from aigc.apps.arena.battles import ArenaStore
from aigc.apps.arena.ratings import leaderboard
from aigc.apps.chat.model import ParamsIn, Reasoning, ReplyStream
from aigc.apps.chat.replies import fit_reply
from aigc.server.app_http import as_sse, path_id, read_body
from aigc.server.app_schemas import merged_params
from aigc.server.auth import principal_of
from aigc.server.errors import APIError
from aigc.server.request_log import request_record
from aigc.server.sse import EventStreamResponse

router = APIRouter(prefix="/api", tags=["arena"])
log = logging.getLogger("aigc.server")


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=200_000)


class BattleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str | None = Field(None, min_length=1, max_length=200_000)
    messages: list[ChatMessageIn] | None = Field(None, min_length=1, max_length=200)
    system: str | None = Field(None, max_length=20_000)
    models: list[str] | None = Field(None, min_length=2, max_length=2)
    params: ParamsIn | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> BattleIn:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either `prompt` or `messages`")
        return self

    def conversation(self) -> list[dict[str, str]]:
        msgs = [m.model_dump() for m in self.messages] if self.messages else [{"role": "user", "content": self.prompt}]
        if self.system and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.system})
        if msgs[-1]["role"] != "user":
            raise APIError(400, "the last message must be the user's", param="messages", code="invalid_value")
        return msgs


class VoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    winner: Literal["a", "b", "tie", "both_bad"]


def _arena(request: Request) -> ArenaStore:
    return ArenaStore(request.app.state.webapp.db, principal_of(request).owner)


def _pick_pair(request: Request, given: list[str] | None) -> tuple[str, str]:
    served = request.app.state.webapp.backends.generative_names()
    if given is not None:
        if given[0] == given[1]:
            raise APIError(400, "compare two different models", param="models", code="invalid_value")
        return given[0], given[1]
    if len(served) < 2:
        raise APIError(400, f"the arena needs two models; this server serves {len(served)}", param="models",
                       code="not_enough_models")
    a, b = random.sample(served, 2)  # which model sits on which side is part of the blinding
    return a, b


async def _start(request: Request, name: str, messages: list[dict[str, str]], body: BattleIn) -> ReplyStream:
    web = request.app.state.webapp
    chat = web.model(name, request_record(request))  # 404 unknown, 503 loading
    params = merged_params(None, body.params)
    fitted = await run_in_threadpool(fit_reply, chat, params, messages)
    return await chat.stream(fitted, params)


async def _battle(request: Request, body: BattleIn, blind: bool) -> EventStreamResponse:
    messages = body.conversation()
    model_a, model_b = _pick_pair(request, body.models)
    streams: list[ReplyStream] = []
    try:
        for name in (model_a, model_b):
            streams.append(await _start(request, name, messages, body))
    except BaseException:
        for s in streams:
            s.cancel()
        raise
    store = _arena(request)
    battle = await run_in_threadpool(store.create, messages, model_a, model_b, blind)
    record = request_record(request)
    record.model = f"{model_a} | {model_b}"

    async def events() -> AsyncIterator[dict[str, Any]]:
        yield {"type": "battle", "id": battle["id"], "blind": blind, "models": battle["models"]}
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def pump(side: int, stream: ReplyStream) -> None:
            text: list[str] = []
            try:
                async for piece in stream:
                    if isinstance(piece, Reasoning):
                        await queue.put({"type": "reasoning", "side": side, "text": piece.text})
                    else:
                        text.append(piece)
                        await queue.put({"type": "delta", "side": side, "text": piece})
                await run_in_threadpool(store.finish, battle["id"], "ab"[side], "".join(text), stream.finish_reason)
                await queue.put({"type": "done", "side": side, "finish_reason": stream.finish_reason,
                                 "completion_tokens": stream.completion_tokens})
            except Exception as e:  # one side failing (a remote's error mid-stream) leaves the other
                if not isinstance(e, APIError):  # and must still end its side, or the stream would wait forever
                    log.exception("arena side %s of battle %s failed", side, battle["id"])
                    e = APIError(500, "the model failed while answering", code="model_error")
                await queue.put({"type": "error", "side": side, "error": e.body()["error"]})
                await run_in_threadpool(store.finish, battle["id"], "ab"[side], "".join(text), "error")

        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
        try:
            finished = 0
            while finished < 2:
                event = await queue.get()
                finished += event["type"] in ("done", "error")
                yield event
        finally:
            for s in streams:
                s.cancel()
            for t in tasks:
                t.cancel()

    def stop() -> None:
        for s in streams:
            s.cancel()

    return EventStreamResponse(as_sse(events()), record, on_close=stop)


@router.post("/compare", response_model=None)
async def compare(request: Request) -> EventStreamResponse:
    body = await read_body(request, BattleIn)
    if body.models is None:
        raise APIError(400, "name the two models to compare", param="models", code="invalid_value")
    return await _battle(request, body, blind=False)


@router.post("/arena/battles", response_model=None)
async def start_battle(request: Request) -> EventStreamResponse:
    body = await read_body(request, BattleIn)
    return await _battle(request, body, blind=True)


@router.get("/arena/battles/{battle_id}")
async def get_battle(battle_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(_arena(request).get, path_id(battle_id, "battle")))


@router.post("/arena/battles/{battle_id}/vote")
async def vote(battle_id: str, request: Request) -> JSONResponse:
    body = await read_body(request, VoteIn)
    return JSONResponse(await run_in_threadpool(_arena(request).vote, path_id(battle_id, "battle"), body.winner))


@router.get("/arena/leaderboard")
async def get_leaderboard(request: Request) -> JSONResponse:
    store = _arena(request)
    votes = await run_in_threadpool(store.votes)
    siblings = await run_in_threadpool(store.sibling_votes)
    return JSONResponse({"data": [s.to_dict() for s in leaderboard(votes + siblings)], "votes": len(votes),
                         "sibling_votes": len(siblings)})
