"""The support widget's side of the server: the script a shop puts on its pages and the API it
talks to (public: visitors have no account; a site's public key names the site).

    GET  /widget.js                                             <script src=... data-site="site_..."></script>
    GET  /widget/v1/sites/{key}                                 name, greeting, language
    POST /widget/v1/sites/{key}/conversations                   a new visitor: {conversation_id, token}
    GET  /widget/v1/sites/{key}/conversations/{id}?after=N      state and messages after id N (polled)
    POST /widget/v1/sites/{key}/conversations/{id}/messages     {content} -> the reply's events (SSE)
    POST /widget/v1/sites/{key}/conversations/{id}/handoff      ask for a person

The visitor's token (`Authorization: Bearer visitor_...`) opens their conversation only. CORS is
per site (WidgetAccessMiddleware): a request must come from one of the site's origins, and only
that origin is told it may read the answer. Visitors are rate limited per visitor and per site.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from aigc.accounts.limits import Limit
from aigc.apps.chat.conversations import ConversationStore
from aigc.apps.chat.replies import ChatReplies, ReplyPlan, language_of
from aigc.apps.support.desk import HANDOFF_REPLY, NO_SOURCE_HANDOFF_REPLY, SupportDesk, asks_for_person
from aigc.apps.support.sites import public_dict, site_by_key, system_prompt
from aigc.knowledge.store import KnowledgeStore
from aigc.server.app_http import event_bytes, path_id, read_body
from aigc.server.app_schemas import ReplyIn
from aigc.server.auth import bearer_token
from aigc.server.errors import APIError
from aigc.server.request_log import request_record
from aigc.server.sse import EventStreamResponse

WIDGET_JS = Path(__file__).resolve().parents[1] / "web" / "widget.js"
PREFIX = "/widget/v1/sites/"
VISITOR_RATE = Limit(20, 60, "20/minute")
SITE_RATE = Limit(600, 60, "600/minute")
_SITE_STATE = "aigc_support_site"

router = APIRouter()


class VisitorMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=4000)


# ---------------------------------------------------------------------------- CORS per site


class WidgetAccessMiddleware:
    """For /widget/v1/sites/{key}/...: the site is looked up once, the request's Origin must be one
    of its origins (preflights included), and the answer carries CORS headers for that origin
    only. A request from anywhere else is a 403 the browser may not even read."""

    def __init__(self, app: ASGIApp, database: Any):
        self.app = app
        self._database = database  # () -> Database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin", "").strip().lower()
        key = path[len(PREFIX):].split("/", 1)[0]
        site = await run_in_threadpool(site_by_key, self._database(), key)
        if site is None:  # nothing to protect: say so readably
            cors = [(b"access-control-allow-origin", origin.encode() or b"*"), (b"vary", b"Origin")]
            error = APIError(404, "No support site has this key (it may have been rotated).", code="unknown_site")
            await _with_headers(error.response(), cors)(scope, receive, send)
            return
        if not origin or origin not in site["origins"]:
            shown = origin or "a page without an Origin header"
            error = APIError(403, f"This site key may not be used from {shown}; add the origin to the site's "
                             "allowed origins.", code="origin_not_allowed")
            await error.response()(scope, receive, send)
            return
        cors = [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin"),
                (b"access-control-expose-headers", b"retry-after")]
        if scope["method"] == "OPTIONS":
            cors += [(b"access-control-allow-methods", b"GET, POST"),
                     (b"access-control-allow-headers", b"authorization, content-type"),
                     (b"access-control-max-age", b"600")]
            await send({"type": "http.response.start", "status": 204, "headers": cors})
            await send({"type": "http.response.body", "body": b""})
            return
        scope.setdefault("state", {})[_SITE_STATE] = site

        async def send_with_cors(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *cors]
            await send(message)

        await self.app(scope, receive, send_with_cors)


class OutsideWidget:
    """Runs middleware `inner` (the server-wide CORS of --cors-origin) everywhere but the widget's
    API, whose CORS is per site: the server-wide one would refuse a shop's preflight."""

    def __init__(self, app: ASGIApp, inner: Any, **options: Any):
        self.app = app
        self.wrapped = inner(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(PREFIX):
            await self.app(scope, receive, send)
        else:
            await self.wrapped(scope, receive, send)


def _with_headers(response: Any, headers: list[tuple[bytes, bytes]]) -> Any:
    response.raw_headers.extend(headers)
    return response


# ---------------------------------------------------------------------------- routes


def _site(request: Request) -> dict[str, Any]:
    site = request.scope.get("state", {}).get(_SITE_STATE)
    if site is None:  # the middleware is not installed (cannot happen in create_app)
        raise APIError(404, "No support site has this key.", code="unknown_site")
    return site


def _desk(request: Request) -> SupportDesk:
    return SupportDesk(request.app.state.webapp.db)


async def _visitor(request: Request, site: dict[str, Any], conversation_id: str) -> dict[str, Any]:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise APIError(401, "Send the visitor token as 'Authorization: Bearer visitor_...'.", code="missing_token")
    return await run_in_threadpool(_desk(request).visitor_conversation, site, path_id(conversation_id, "conversation"), token)


def _for_visitor(m: dict[str, Any]) -> dict[str, Any]:
    """A message as the visitor's widget shows it (no token counts, models or scores)."""
    sources = [{"n": s["n"], "filename": s["document"]["filename"], "heading": s["heading"], "text": s["text"]}
               for s in m.get("sources") or []]
    return {"id": m["id"], "role": m["role"], "content": m["content"], "staff": m.get("author") is not None,
            "author": m.get("author"), "finish_reason": m["finish_reason"], "sources": sources,
            "created_at": m["created_at"]}


@router.get("/widget.js", include_in_schema=False)
async def widget_script() -> FileResponse:
    # Loaded by other sites' pages: a script tag needs no CORS, only not to be refused.
    return FileResponse(WIDGET_JS, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "no-cache", "Cross-Origin-Resource-Policy": "cross-origin"})


@router.get("/widget/v1/sites/{key}", include_in_schema=False)
async def site_info(key: str, request: Request) -> JSONResponse:
    return JSONResponse(public_dict(_site(request)))


@router.post("/widget/v1/sites/{key}/conversations", status_code=201, include_in_schema=False)
async def open_conversation(key: str, request: Request) -> JSONResponse:
    site = _site(request)
    _rate_check(request, site, None)
    conv, token = await run_in_threadpool(_desk(request).open_visitor, site)
    return JSONResponse({"conversation_id": conv["id"], "token": token, "handoff": None}, status_code=201)


@router.get("/widget/v1/sites/{key}/conversations/{conversation_id}", include_in_schema=False)
async def visitor_state(key: str, conversation_id: str, request: Request, after: int = 0) -> JSONResponse:
    site = _site(request)
    conv = await _visitor(request, site, conversation_id)
    messages = await run_in_threadpool(_desk(request).messages_after, conv["id"], max(0, after))
    return JSONResponse({"conversation_id": conv["id"], "handoff": conv.get("handoff"),
                         "messages": [_for_visitor(m) for m in messages]})


@router.post("/widget/v1/sites/{key}/conversations/{conversation_id}/handoff", include_in_schema=False)
async def visitor_handoff(key: str, conversation_id: str, request: Request) -> JSONResponse:
    site = _site(request)
    conv = await _visitor(request, site, conversation_id)
    state = await run_in_threadpool(_desk(request).request_handoff, conv["id"], "asked")
    return JSONResponse({"conversation_id": conv["id"], "handoff": state})


def _rate_check(request: Request, site: dict[str, Any], visitor: int | None) -> None:
    limiter = request.app.state.gate.limiter
    subjects: list[tuple[str, Any]] = [("site", site["id"])]
    ok, _, reset = limiter.check(subjects, SITE_RATE)
    if ok and visitor is not None:
        ok, _, reset = limiter.check([("visitor", visitor)], VISITOR_RATE)
    if not ok:
        retry = max(1, round(reset + 0.5))
        raise APIError(429, f"Too many messages; try again in {retry}s.", code="rate_limit_exceeded",
                       headers={"Retry-After": str(retry)})


@router.post("/widget/v1/sites/{key}/conversations/{conversation_id}/messages", response_model=None,
             include_in_schema=False)
async def visitor_message(key: str, conversation_id: str, request: Request) -> EventStreamResponse:
    from aigc.server.app_routes import start_reply, stored_text  # the app's one way from a request to a reply
    from aigc.server.kb_routes import owners_retriever

    site = _site(request)
    conv = await _visitor(request, site, conversation_id)
    body = await read_body(request, VisitorMessageIn)
    cid, content = conv["id"], body.content
    _rate_check(request, site, cid)
    web = request.app.state.webapp
    desk = _desk(request)
    owner = site["owner_id"]
    store = ConversationStore(web.db, owner)
    if conv.get("handoff") in ("waiting", "active"):  # a person answers: the assistant stays silent
        redact = stored_text(request)
        message = await run_in_threadpool(desk.add_visitor_message, site, cid, redact(content) if redact else content,
                                          None)
        return EventStreamResponse(_held(message, conv["handoff"]), request_record(request))

    language = site["language"] if site["language"] in ("zh", "en") else language_of(content)
    await run_in_threadpool(lambda: store.update(cid, system_prompt=system_prompt(site, language),
                                                 knowledge_base_ids=site["knowledge_base_ids"],
                                                 model=site["model"]))
    replies = ChatReplies(store, owners_retriever(KnowledgeStore(web.db).scoped(owner)), stored_text(request))
    asked = asks_for_person(content)

    def plan_of(model: Any, params: Any) -> ReplyPlan:
        plan = replies.plan_send(cid, content, model, params)
        if asked:
            plan.canned, plan.canned_reason, plan.sources, reason = HANDOFF_REPLY[language], "handoff", None, "asked"
        elif plan.canned is not None and site["handoff_on_no_source"]:
            plan.canned, plan.canned_reason, reason = NO_SOURCE_HANDOFF_REPLY[language], "handoff", "no_source"
        else:
            return plan
        commit = plan.commit

        def commit_and_queue() -> dict[str, Any] | None:
            out = commit()
            desk.request_handoff(cid, reason)
            return out

        plan.commit = commit_and_queue
        return plan

    return await start_reply(request, replies, cid, plan_of, ReplyIn(), show_reasoning=False)


async def _held(message: dict[str, Any], state: str) -> AsyncIterator[bytes]:
    """The events of a message a person will answer: stored, and no reply from the assistant."""
    yield event_bytes({"type": "start", "user_message": message, "context": {}, "model": None})
    yield event_bytes({"type": "done", "message": None, "handoff": state})
