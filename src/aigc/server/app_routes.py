"""The web app: its JSON/SSE API under /api (conversations, messages, feedback) and its pages.

`install_app(app, settings, backends)` opens the database, mounts the routes here and in
app_studio.py, the static UI (`/` and `/static/...`, files from aigc/web, nothing from a CDN), the
body size limit and the app's error handlers.

Replies stream as server-sent events (see apps/chat/replies.py for the events). The user's
message is stored as soon as the model accepts the request; the reply when it ends, when the user
presses stop (`POST .../stop`), or when the client disconnects (partial text, "stopped").
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from aigc.apps.chat.conversations import ConversationStore
from aigc.apps.chat.model import ChatModel, GenerationParams, ReplyStream
from aigc.apps.chat.replies import CannedReply, ChatReplies, ReplyPlan
from aigc.apps.chat.transcript import export_json, export_markdown, import_json
from aigc.apps.studio.library import TemplateLibrary
from aigc.knowledge.indexer import Indexer
from aigc.knowledge.store import KnowledgeStore
from aigc.safety.pii import redact
from aigc.server import (
    app_studio,
    arena_routes,
    auth_routes,
    feedback_routes,
    kb_routes,
    support_routes,
    widget_routes,
)
from aigc.server.app_http import (
    as_sse,
    install_app_error_handlers,
    path_id,
    read_body,
    read_json,
)
from aigc.server.app_models import Observe, chat_model, model_cards, pick_model_name
from aigc.server.app_schemas import ConversationIn, FeedbackIn, MessageIn, ReplyIn, merged_params
from aigc.server.auth import principal_of
from aigc.server.backends import ModelBackends
from aigc.server.errors import APIError
from aigc.server.request_log import RequestRecord, request_record
from aigc.server.sse import EventStreamResponse
from aigc.settings import Settings
from aigc.store import Database

WEB_DIR = Path(__file__).resolve().parents[1] / "web"

router = APIRouter(prefix="/api")


# ---------------------------------------------------------------------------- state


@dataclass
class ActiveReply:
    """A reply being generated: what `POST .../stop` cancels."""

    stream: ReplyStream | None = None
    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True
        if self.stream is not None:
            self.stream.cancel()


class WebApp:
    """The app's state on the server. The database opens on first use, so a server that only
    answers the OpenAI API (or a test of it) never creates a database file."""

    def __init__(self, settings: Settings, backends: ModelBackends, db: Database | None = None):
        self.settings = settings
        self.backends = backends
        self.active: dict[int, ActiveReply] = {}
        self._db = db
        self._lock = threading.Lock()
        self._stores: tuple[ConversationStore, ChatReplies, TemplateLibrary] | None = None
        self._indexer: Indexer | None = None

    def _open(self) -> tuple[ConversationStore, ChatReplies, TemplateLibrary]:
        with self._lock:
            if self._stores is None:
                if self._db is None:
                    self._db = Database(self.settings.database_url)
                store = ConversationStore(self._db)
                self._stores = (store, ChatReplies(store), TemplateLibrary(self._db))
            return self._stores

    @property
    def db(self) -> Database:
        self._open()
        assert self._db is not None
        return self._db

    @property
    def conversations(self) -> ConversationStore:
        return self._open()[0]

    @property
    def replies(self) -> ChatReplies:
        return self._open()[1]

    @property
    def templates(self) -> TemplateLibrary:
        return self._open()[2]

    @property
    def knowledge(self) -> KnowledgeStore:
        return KnowledgeStore(self.db)

    @property
    def indexer(self) -> Indexer:
        """The knowledge bases' background indexer (started with the first upload or `resume`)."""
        db = self.db
        with self._lock:
            if self._indexer is None:
                self._indexer = Indexer(db)
            return self._indexer

    def stop_all(self) -> None:
        """Stop every reply being generated (the server is shutting down): each is stored as far
        as it got, marked stopped."""
        for active in list(self.active.values()):
            active.stop()

    def model(self, name: str, record: RequestRecord | None = None, *, observe: Observe | None = None,
              endpoint: str = "") -> ChatModel:
        """The model `name`; with `record`, the request whose tokens its replies count; with
        `observe` instead (work no request waits for: an eval run), each reply is counted on its
        own under `endpoint` (app_models.BackendChatModel)."""
        return chat_model(self.backends, name, self.settings.max_context, record, observe=observe, endpoint=endpoint)


def _web(request: Request) -> WebApp:
    return request.app.state.webapp


def _conversations(request: Request) -> ConversationStore:
    """The conversations of the request's principal (accounts: another user's are not found)."""
    return _web(request).conversations.scoped(principal_of(request).owner)


def _replies(request: Request) -> ChatReplies:
    return ChatReplies(_conversations(request), kb_routes.retriever_for(request), stored_text(request))


def stored_text(request: Request) -> Callable[[str], str] | None:
    """How message text is saved: redacted with --redact-pii store, else as it is."""
    if "store" not in _web(request).settings.redact_pii:
        return None
    return lambda text: redact(text).text


# ---------------------------------------------------------------------------- models


@router.get("/models")
async def list_models(request: Request) -> JSONResponse:
    web = _web(request)
    cards = model_cards(web.backends, web.settings.max_context)
    ready = [c["id"] for c in cards if c["ready"]]
    return JSONResponse({"data": cards, "default": ready[0] if ready else None})


# ---------------------------------------------------------------------------- conversations


@router.get("/conversations")
async def list_conversations(request: Request, q: str | None = None) -> JSONResponse:
    store = _conversations(request)
    if q and q.strip():
        return JSONResponse({"data": await run_in_threadpool(store.search, q[:200]), "query": q})
    return JSONResponse({"data": await run_in_threadpool(store.list)})


@router.post("/conversations", status_code=201)
async def create_conversation(request: Request) -> JSONResponse:
    body = await read_body(request, ConversationIn)
    web = _web(request)
    if body.model:
        web.backends.get(body.model)  # 404 for a model this server does not know
    kb_ids = await kb_routes.check_knowledge_ids(request, body.knowledge_base_ids)
    conv = await run_in_threadpool(lambda: _conversations(request).create(
        title=body.title or "", system_prompt=body.system_prompt or "", model=body.model,
        params=body.params.model_dump(exclude_none=True) if body.params else {}, knowledge_base_ids=kb_ids))
    return JSONResponse(conv, status_code=201)


@router.post("/conversations/import", status_code=201)
async def import_conversation(request: Request) -> JSONResponse:
    data = await read_json(request)
    store = _conversations(request)
    return JSONResponse(await run_in_threadpool(import_json, store, data), status_code=201)


@router.get("/conversations/{conversation_id}")
async def get_conversation(conversation_id: str, request: Request) -> JSONResponse:
    cid = path_id(conversation_id, "conversation")
    web = _web(request)
    conv = await run_in_threadpool(_conversations(request).get, cid)
    conv["generating"] = cid in web.active
    return JSONResponse(conv)


@router.patch("/conversations/{conversation_id}")
async def update_conversation(conversation_id: str, request: Request) -> JSONResponse:
    cid = path_id(conversation_id, "conversation")
    body = await read_body(request, ConversationIn)
    web = _web(request)
    if body.model:
        web.backends.get(body.model)
    params = None
    if body.params is not None:
        stored = (await run_in_threadpool(_conversations(request).get_meta, cid))["params"]
        params = {**stored, **body.params.model_dump(exclude_unset=True)}
        params = {k: v for k, v in params.items() if v is not None}
    kb_ids = await kb_routes.check_knowledge_ids(request, body.knowledge_base_ids)
    conv = await run_in_threadpool(lambda: _conversations(request).update(
        cid, title=body.title, system_prompt=body.system_prompt, model=body.model, params=params,
        knowledge_base_ids=kb_ids))
    return JSONResponse(conv)


@router.delete("/conversations/{conversation_id}", status_code=204)
async def delete_conversation(conversation_id: str, request: Request) -> Response:
    cid = path_id(conversation_id, "conversation")
    web = _web(request)
    active = web.active.get(cid)
    if active is not None:
        active.stop()
    await run_in_threadpool(_conversations(request).delete, cid)
    return Response(status_code=204)


@router.get("/conversations/{conversation_id}/export", response_model=None)
async def export_conversation(conversation_id: str, request: Request, format: str = "json") -> Response:
    cid = path_id(conversation_id, "conversation")
    if format not in ("json", "markdown", "md"):
        raise APIError(422, "format must be json or markdown", param="format", code="invalid_value")
    store = _conversations(request)
    if format != "json":  # to read: the branch on screen
        conv = await run_in_threadpool(store.get, cid)
        return Response(export_markdown(conv), media_type="text/markdown; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="conversation-{cid}.md"'})
    conv = await run_in_threadpool(lambda: store.get(cid, every_branch=True))  # to keep: the whole tree
    return JSONResponse(export_json(conv),
                        headers={"Content-Disposition": f'attachment; filename="conversation-{cid}.json"'})


@router.get("/conversations/{conversation_id}/context")
async def conversation_context(conversation_id: str, request: Request, model: str | None = None) -> JSONResponse:
    """The window meter for the conversation as it stands: what the next reply would see."""
    cid = path_id(conversation_id, "conversation")
    web = _web(request)
    meta = await run_in_threadpool(_conversations(request).get_meta, cid)
    chat = web.model(pick_model_name(web.backends, model, meta["model"]))
    params = merged_params(meta["params"], None)
    report = await run_in_threadpool(_replies(request).current_context, cid, chat, params)
    return JSONResponse({**report, "model": chat.name})


# ---------------------------------------------------------------------------- replies


async def _resolve(request: Request, store: ConversationStore, cid: int, body: ReplyIn
                   ) -> tuple[ChatModel, GenerationParams]:
    """The reply's model and parameters; what the request sets is remembered for the conversation."""
    web = _web(request)
    meta = await run_in_threadpool(store.get_meta, cid)
    name = pick_model_name(web.backends, body.model, meta["model"])
    chat = web.model(name, request_record(request))
    params = merged_params(meta["params"], body.params)
    if body.model or body.params:
        await run_in_threadpool(lambda: store.update(
            cid, model=name if body.model else None, params=params.to_dict() if body.params else None))
    return chat, params


async def start_reply(request: Request, replies: ChatReplies, cid: int,
                      plan_of: Callable[[ChatModel, GenerationParams], ReplyPlan],
                      body: ReplyIn, show_reasoning: bool = True) -> EventStreamResponse:
    """Plan, start the model (or the canned reply), store the user's side, stream the events: the
    one way from an HTTP request to a reply in a conversation (the app's chat and the support
    widget). `replies.store` decides whose conversation it is. show_reasoning=False: a reasoning
    model's thinking is stored but not sent (a shop's visitors see answers only)."""
    web = _web(request)
    store = replies.store
    await run_in_threadpool(store.get_meta, cid)  # 404 before 409: nothing leaks
    if cid in web.active:
        raise APIError(409, "A reply is already being generated in this conversation; stop it first.",
                       code="reply_in_progress")
    active = web.active[cid] = ActiveReply()
    try:
        chat, params = await _resolve(request, store, cid, body)
        plan = await run_in_threadpool(plan_of, chat, params)
        record = request_record(request)
        record.model, record.prompt_tokens = chat.name, plan.fitted.used
        if plan.canned is not None:  # grounded, and no source passed the bar: say so, no model
            active.stream = stream = CannedReply(plan.canned, plan.fitted.used, plan.canned_reason)
        else:
            active.stream = stream = await chat.stream(plan.fitted, plan.params)  # 429/503/400 before anything is stored
        try:
            user_message = await run_in_threadpool(plan.commit)
        except BaseException:
            stream.cancel()
            raise
    except BaseException:
        web.active.pop(cid, None)
        raise

    def finished() -> None:
        if web.active.get(cid) is active:
            del web.active[cid]

    async def visible(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        async for event in events:
            if show_reasoning:
                yield event
            elif event["type"] == "done":
                yield {**event, "message": {k: v for k, v in event["message"].items() if k != "reasoning"}}
            elif event["type"] != "reasoning":
                yield event

    async def events() -> AsyncIterator[bytes]:
        try:
            run = replies.run(plan, stream, user_message, is_stopped=lambda: active.stopped)
            async for chunk in as_sse(visible(run)):
                yield chunk
        finally:  # before the response's last byte: a client that saw "done" may send the next message
            finished()

    return EventStreamResponse(events(), record, on_close=finished)


@router.post("/conversations/{conversation_id}/messages", response_model=None)
async def send_message(conversation_id: str, request: Request) -> EventStreamResponse:
    cid = path_id(conversation_id, "conversation")
    body = await read_body(request, MessageIn)
    replies = _replies(request)
    return await start_reply(request, replies, cid, lambda m, p: replies.plan_send(cid, body.content, m, p), body)


@router.post("/conversations/{conversation_id}/regenerate", response_model=None)
async def regenerate(conversation_id: str, request: Request) -> EventStreamResponse:
    cid = path_id(conversation_id, "conversation")
    body = await read_body(request, ReplyIn)
    replies = _replies(request)
    return await start_reply(request, replies, cid, lambda m, p: replies.plan_regenerate(cid, m, p), body)


@router.post("/conversations/{conversation_id}/messages/{message_id}/edit", response_model=None)
async def edit_message(conversation_id: str, message_id: str, request: Request) -> EventStreamResponse:
    """The new text becomes a sibling of message k (k and its replies stay), answered after k's parent."""
    cid = path_id(conversation_id, "conversation")
    mid = path_id(message_id, "message")
    body = await read_body(request, MessageIn)
    replies = _replies(request)
    return await start_reply(request, replies, cid, lambda m, p: replies.plan_edit(cid, mid, body.content, m, p), body)


@router.post("/conversations/{conversation_id}/messages/{message_id}/switch")
async def switch_branch(conversation_id: str, message_id: str, request: Request) -> JSONResponse:
    """Show another branch (‹ 2/3 ›, a search hit): the path through the message and, below it, the
    branch as it was left. Returns the conversation as GET does."""
    cid = path_id(conversation_id, "conversation")
    mid = path_id(message_id, "message")
    web = _web(request)
    store = _conversations(request)
    await run_in_threadpool(store.get_meta, cid)  # 404 before 409: nothing leaks
    if cid in web.active:  # the reply being written follows the path it was asked on
        raise APIError(409, "A reply is being generated in this conversation; stop it first.",
                       code="reply_in_progress")
    conv = await run_in_threadpool(store.switch_branch, cid, mid)
    conv["generating"] = False
    return JSONResponse(conv)


@router.post("/conversations/{conversation_id}/messages/{message_id}/fork", status_code=201)
async def fork_conversation(conversation_id: str, message_id: str, request: Request) -> JSONResponse:
    """A new conversation holding the path up to the message (this one is left as it is)."""
    cid = path_id(conversation_id, "conversation")
    mid = path_id(message_id, "message")
    return JSONResponse(await run_in_threadpool(_conversations(request).fork, cid, mid), status_code=201)


@router.post("/conversations/{conversation_id}/stop")
async def stop_reply(conversation_id: str, request: Request) -> JSONResponse:
    cid = path_id(conversation_id, "conversation")
    web = _web(request)
    await run_in_threadpool(_conversations(request).get_meta, cid)  # 404 for an unknown conversation
    active = web.active.get(cid)
    if active is not None:
        active.stop()
    return JSONResponse({"stopped": active is not None})


# ---------------------------------------------------------------------------- feedback


@router.put("/messages/{message_id}/feedback")
async def put_feedback(message_id: str, request: Request) -> JSONResponse:
    mid = path_id(message_id, "message")
    body = await read_body(request, FeedbackIn)
    store = _conversations(request)
    return JSONResponse(await run_in_threadpool(store.set_feedback, mid, body.rating, body.comment))


@router.delete("/messages/{message_id}/feedback", status_code=204)
async def delete_feedback(message_id: str, request: Request) -> Response:
    mid = path_id(message_id, "message")
    await run_in_threadpool(_conversations(request).clear_feedback, mid)
    return Response(status_code=204)


@router.get("/feedback")
async def list_feedback(request: Request) -> JSONResponse:
    return JSONResponse({"data": await run_in_threadpool(_conversations(request).list_feedback)})


# ---------------------------------------------------------------------------- mounting


def install_app(app: FastAPI, settings: Settings, backends: ModelBackends, *, db: Database | None = None) -> WebApp:
    """Add the web app to the API server (called by `create_app`)."""
    web = WebApp(settings, backends, db)
    app.state.webapp = web
    install_app_error_handlers(app)
    app.include_router(router)
    app.include_router(app_studio.router)
    app.include_router(auth_routes.router)
    app.include_router(kb_routes.router)
    app.include_router(feedback_routes.router)  # admins: rated replies as training data
    app.include_router(arena_routes.router)  # compare two models, blind battles, the leaderboard
    app.include_router(support_routes.router)
    app.include_router(widget_routes.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    return web
