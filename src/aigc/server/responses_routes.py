"""The OpenAI Responses API: POST /v1/responses (stateless, or continuing `previous_response_id`),
GET and DELETE /v1/responses/{id}.

A request becomes a chat request (instructions -> system message, input items -> messages, flat
function tools -> chat tools, `text.format` -> response_format) and runs on the model's backend
like a chat completion (serving.py), local or remote: a remote needs only chat completions. Output
items: a reasoning model's thinking first, as one `reasoning` item with `reasoning_text` content
(as vLLM and gpt-oss give it; no summary), then one `message` with `output_text` when there is
text, one `function_call` per call. Streaming sends the documented events (response.created ...
response.reasoning_text.delta ... response.output_text.delta ... response.completed), each with
`type` and `sequence_number`. Reasoning items sent back as input go to the template with the
assistant turn they preceded (`reasoning_content`).
With `store` (the default) the response and the conversation it ends are kept in the database for
`response_store_days`, so a later request can continue it by id (instructions are not carried over,
as OpenAI does).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from aigc.server.auth import principal_of
from aigc.server.errors import APIError, bad_request
from aigc.server.generation import ChoiceDelta
from aigc.server.schemas import ChatCompletionRequest
from aigc.server.serving import ChoiceOutput, Generation, begin, collect, start
from aigc.server.sse import EventStreamResponse
from aigc.store.models import StoredResponse

router = APIRouter()


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


# ---------------------------------------------------------------------------- request -> chat


def _part_text(part: Any, where: str) -> str:
    if isinstance(part, dict) and part.get("type") in ("input_text", "output_text", "text") and \
            isinstance(part.get("text"), str):
        return part["text"]
    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
    raise bad_request(f"{where}: content parts of type {kind!r} are not supported (input_text, output_text).",
                      param="input")


def _reasoning_text(item: dict[str, Any]) -> str:
    """A reasoning item's text: its reasoning_text content, else its summary."""
    parts = item.get("content") or item.get("summary") or []
    return "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def input_messages(items: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses input items as chat messages."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    out: list[dict[str, Any]] = []
    reasoning = ""  # reasoning items' text, for the assistant turn that follows them
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "reasoning":
            reasoning += _reasoning_text(item)
            continue
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise bad_request(f"input[{i}].role must be user, assistant, system or developer.", param="input")
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(_part_text(p, f"input[{i}]") for p in content)
            if not isinstance(content, str):
                raise bad_request(f"input[{i}].content must be a string or a list of text parts.", param="input")
            out.append({"role": "system" if role == "developer" else role, "content": content})
        elif kind == "function_call":
            call = {"id": item.get("call_id") or _new_id("call"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments", "{}")}}
            if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls") and not out[-1]["content"]:
                out[-1]["tool_calls"].append(call)  # parallel calls: one assistant turn
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append({"role": "tool", "tool_call_id": item.get("call_id"),
                        "content": output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)})
        else:
            raise bad_request(f"input[{i}] has type {kind!r}; supported: message, reasoning, function_call, "
                              "function_call_output.", param="input")
        if reasoning and out[-1]["role"] == "assistant":
            out[-1]["reasoning_content"] = reasoning
        reasoning = ""  # reasoning with no answer after it says nothing to the next turn
    return out


def _chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") != "function":
            kind = t.get("type") if isinstance(t, dict) else None
            raise bad_request(f"tools[{i}] has type {kind!r}; only function tools are supported.", param="tools")
        out.append({"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters")
                                                     if k in t}})
    return out


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": fmt.get("name", "output"),
                                                       "schema": fmt.get("schema"), "strict": fmt.get("strict")}}
    return fmt  # json_object, or an unknown type the chat path refuses


def _load_previous(request: Request, response_id: str) -> list[dict[str, Any]]:
    row = _get_stored(request, response_id)
    return list(row.conversation)


def _get_stored(request: Request, response_id: str) -> StoredResponse:
    db = request.app.state.webapp.db
    with db.session() as s:
        row = s.get(StoredResponse, response_id)
        if row is not None and row.user_id != principal_of(request).owner:
            row = None  # another user's: not found, as if it never existed
        if row is not None and row.expires_at.replace(tzinfo=row.expires_at.tzinfo or UTC) < datetime.now(UTC):
            s.delete(row)
            s.commit()
            row = None
        if row is None:
            raise APIError(404, f"No response with id '{response_id}' (never stored, deleted or expired).",
                           param="previous_response_id", code="response_not_found")
        s.expunge(row)
        return row


def _store(request: Request, body: dict[str, Any], conversation: list[dict[str, Any]]) -> None:
    days = request.app.state.settings.response_store_days
    db = request.app.state.webapp.db
    with db.session() as s:
        s.add(StoredResponse(id=body["id"], user_id=principal_of(request).owner, model=body["model"], body=body,
                             conversation=conversation,
                             expires_at=datetime.now(UTC) + timedelta(days=days)))
        s.commit()


# ---------------------------------------------------------------------------- the route


def _response_body(req: ResponsesRequest, rid: str, created: int, model: str, output: list[dict[str, Any]],
                   status: str, usage: dict[str, Any] | None, incomplete: str | None) -> dict[str, Any]:
    return {
        "id": rid, "object": "response", "created_at": created, "status": status, "model": model,
        "output": output, "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": req.instructions, "previous_response_id": req.previous_response_id,
        "max_output_tokens": req.max_output_tokens, "temperature": req.temperature, "top_p": req.top_p,
        "tools": req.tools or [], "tool_choice": req.tool_choice or "auto",
        "parallel_tool_calls": True if req.parallel_tool_calls is None else req.parallel_tool_calls,
        "text": req.text or {"format": {"type": "text"}}, "store": req.store, "metadata": req.metadata or {},
        "usage": usage,
    }


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []}


def _reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "status": status, "summary": [],
            "content": [{"type": "reasoning_text", "text": text}] if status == "completed" else []}


def _call_item(item_id: str, call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call["id"], "name": call["function"]["name"],
            "arguments": call["function"]["arguments"] if status == "completed" else "", "status": status}


@router.post("/v1/responses", response_model=None)
async def create_response(req: ResponsesRequest, request: Request) -> Response:
    record, backend = begin(request, "/v1/responses", req.model)
    history = await run_in_threadpool(_load_previous, request, req.previous_response_id) \
        if req.previous_response_id else []
    turn = input_messages(req.input)
    system = [{"role": "system", "content": req.instructions}] if req.instructions else []
    chat = ChatCompletionRequest(
        model=req.model, messages=system + history + turn, tools=_chat_tools(req.tools),
        tool_choice=_chat_tool_choice(req.tool_choice), parallel_tool_calls=req.parallel_tool_calls,
        response_format=_response_format(req.text), max_completion_tokens=req.max_output_tokens,
        temperature=req.temperature, top_p=req.top_p)
    rid, created = _new_id("resp"), int(time.time())
    gen = await start(request, record, backend, backend.chat(chat, rid))

    def finish_and_store(output: list[dict[str, Any]], reason: str | None) -> dict[str, Any]:
        status = "incomplete" if reason == "length" else "completed"
        u = gen.usage()
        usage = {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
                 "total_tokens": u.total_tokens,
                 "input_tokens_details": {"cached_tokens": record.cached_tokens},
                 "output_tokens_details": {"reasoning_tokens": gen.reasoning_tokens}}
        body = _response_body(req, rid, created, backend.name, output, status, usage,
                              "max_output_tokens" if reason == "length" else None)
        if req.store:
            _store(request, body, history + turn + _output_messages(output))
        return body

    if req.stream:
        run = _EventWriter(req, rid, created, backend.name)
        return EventStreamResponse(run.events(gen, finish_and_store), record, on_close=gen.release)

    choice = ChoiceOutput()

    async def gather(deltas: AsyncIterator[ChoiceDelta]) -> None:
        async for d in deltas:
            if d.index == 0:
                choice.add(d)

    await collect(request, gen, gather)
    content, calls, reasoning = choice.content(), choice.tool_calls(), choice.reasoning_content()
    output = [_reasoning_item(_new_id("rs"), reasoning)] if reasoning else []
    output += [_message_item(_new_id("msg"), content or "")] if content or not (calls or reasoning) else []
    output += [_call_item(_new_id("fc"), c) for c in calls]
    body = await run_in_threadpool(finish_and_store, output, choice.finish_reason)
    return JSONResponse(body)


def _output_messages(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A response's output items as chat messages (what the next turn's prompt holds)."""
    text = "".join(p["text"] for item in output if item["type"] == "message" for p in item["content"])
    reasoning = "".join(_reasoning_text(item) for item in output if item["type"] == "reasoning")
    calls = [{"id": i["call_id"], "type": "function", "function": {"name": i["name"], "arguments": i["arguments"]}}
             for i in output if i["type"] == "function_call"]
    # content None only beside tool calls: a template needs a string otherwise (a reply cut while thinking)
    return [{"role": "assistant", "content": text or (None if calls else ""),
             **({"reasoning_content": reasoning} if reasoning else {}), **({"tool_calls": calls} if calls else {})}]


class _EventWriter:
    """One generation's deltas as Responses stream events: reasoning into one reasoning item
    (closed when the answer starts), text into one message item, each tool call into a
    function_call item whose arguments stream as they arrive."""

    def __init__(self, req: ResponsesRequest, rid: str, created: int, model: str):
        self.req, self.rid, self.created, self.model = req, rid, created, model
        self.seq = 0
        self.output: list[dict[str, Any]] = []
        self.thought: dict[str, Any] | None = None  # the open reasoning item
        self.thinking: list[str] = []
        self.msg: dict[str, Any] | None = None  # the open message item
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}  # tool-call index -> its (open) item

    def _event(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return f"event: {kind}\ndata: {json.dumps(body, ensure_ascii=False)}\n\n".encode()

    def _reasoning(self, value: str) -> list[bytes]:
        out = []
        if self.thought is None or self.thought["status"] == "completed":  # (a remote may think again later)
            self.thought, self.thinking = _reasoning_item(_new_id("rs"), "", "in_progress"), []
            self.output.append(self.thought)
            index = len(self.output) - 1
            out.append(self._event("response.output_item.added", output_index=index, item=self.thought))
            out.append(self._event("response.content_part.added", item_id=self.thought["id"], output_index=index,
                                   content_index=0, part={"type": "reasoning_text", "text": ""}))
        self.thinking.append(value)
        out.append(self._event("response.reasoning_text.delta", item_id=self.thought["id"],
                               output_index=self.output.index(self.thought), content_index=0, delta=value))
        return out

    def _end_reasoning(self) -> list[bytes]:
        """Close the reasoning item (once): the answer starts, or the output ended."""
        if self.thought is None or self.thought["status"] == "completed":
            return []
        index = self.output.index(self.thought)
        self.thought = self.output[index] = done = _reasoning_item(self.thought["id"], "".join(self.thinking))
        part = done["content"][0]
        return [self._event("response.reasoning_text.done", item_id=done["id"], output_index=index, content_index=0,
                            text=part["text"]),
                self._event("response.content_part.done", item_id=done["id"], output_index=index, content_index=0,
                            part=part),
                self._event("response.output_item.done", output_index=index, item=done)]

    def _text(self, value: str) -> list[bytes]:
        out = self._end_reasoning()
        if self.msg is None:
            self.msg = _message_item(_new_id("msg"), "", "in_progress")
            self.output.append(self.msg)
            index = len(self.output) - 1
            out.append(self._event("response.output_item.added", output_index=index, item=self.msg))
            out.append(self._event("response.content_part.added", item_id=self.msg["id"], output_index=index,
                                   content_index=0, part={"type": "output_text", "text": "", "annotations": []}))
        self.text.append(value)
        out.append(self._event("response.output_text.delta", item_id=self.msg["id"],
                               output_index=self.output.index(self.msg), content_index=0, delta=value))
        return out

    def _call(self, fragment: dict[str, Any]) -> list[bytes]:
        out = self._end_reasoning()
        k = int(fragment.get("index") or 0)
        function = fragment.get("function") or {}
        item = self.calls.get(k)
        if item is None:
            call = {"id": fragment.get("id") or _new_id("call"), "function": {"name": function.get("name") or "",
                                                                              "arguments": ""}}
            item = self.calls[k] = _call_item(_new_id("fc"), call, "in_progress")
            self.output.append(item)
            out.append(self._event("response.output_item.added", output_index=len(self.output) - 1, item=dict(item)))
        if function.get("arguments"):
            item["arguments"] += function["arguments"]
            out.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                   output_index=self.output.index(item), delta=function["arguments"]))
        return out

    def _close(self) -> list[bytes]:
        out = self._end_reasoning()
        for index, item in enumerate(self.output):
            if item["type"] == "reasoning":
                continue  # closed above, or when the answer started
            if item is self.msg:
                done = _message_item(item["id"], "".join(self.text))
                self.output[index] = done
                part = done["content"][0]
                out.append(self._event("response.output_text.done", item_id=done["id"], output_index=index,
                                       content_index=0, text=part["text"]))
                out.append(self._event("response.content_part.done", item_id=done["id"], output_index=index,
                                       content_index=0, part=part))
            else:
                item["status"] = "completed"
                out.append(self._event("response.function_call_arguments.done", item_id=item["id"],
                                       output_index=index, arguments=item["arguments"]))
            out.append(self._event("response.output_item.done", output_index=index, item=self.output[index]))
        return out

    async def events(self, gen: Generation, finish) -> AsyncIterator[bytes]:
        start = _response_body(self.req, self.rid, self.created, self.model, [], "in_progress", None, None)
        yield self._event("response.created", response=start)
        yield self._event("response.in_progress", response=start)
        reason = None
        try:
            async for d in gen.deltas():
                if d.index != 0:
                    continue
                reason = d.finish_reason or reason
                for event in self._reasoning(d.reasoning) if d.reasoning else []:
                    yield event
                for event in self._text(d.text) if d.text else []:
                    yield event
                for fragment in d.tool_calls or []:
                    for event in self._call(fragment):
                        yield event
        except APIError as e:  # after the stream started: one error event, then the end
            gen.record.error = e.message
            yield self._event("error", code=e.code or e.type, message=e.message, param=e.param)
            return
        except Exception as e:
            gen.record.error = f"{type(e).__name__}: {e}"
            yield self._event("error", code="internal_error", message=f"{type(e).__name__}: {e}", param=None)
            return
        for event in self._close():
            yield event
        body = await run_in_threadpool(finish, self.output, reason)
        yield self._event("response.completed" if body["status"] == "completed" else "response.incomplete",
                          response=body)


@router.get("/v1/responses/{response_id}", response_model=None)
async def get_response(response_id: str, request: Request) -> Response:
    row = await run_in_threadpool(_get_stored, request, response_id)
    return JSONResponse(row.body)


@router.delete("/v1/responses/{response_id}", response_model=None)
async def delete_response(response_id: str, request: Request) -> Response:
    def delete() -> None:
        _get_stored(request, response_id)
        with request.app.state.webapp.db.session() as s:
            row = s.get(StoredResponse, response_id)
            if row is not None:
                s.delete(row)
                s.commit()

    await run_in_threadpool(delete)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})
