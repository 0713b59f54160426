"""Customer service in the web app's /api: support sites (their owners) and the hand-off queue
(staff, administrators, and owners for their own sites).

    GET    /api/support/sites                                 the principal's sites (with embed code)
    POST   /api/support/sites                                 {name, origins, persona?, rules?, greeting?,
                                                               language?, knowledge_base_ids?, model?,
                                                               handoff_on_no_source?}
    GET    /api/support/sites/{id}  PATCH  DELETE             (delete: its visitors' conversations too)
    POST   /api/support/sites/{id}/rotate-key                 pages with the old key stop working
    GET    /api/support/queue?state=open|waiting|active|resolved|all
    GET    /api/support/conversations/{id}                    the transcript, with sources
    POST   /api/support/conversations/{id}/messages           {content}: a staff reply (claims it)
    POST   /api/support/conversations/{id}/state              {action: claim | resolve | assistant}
"""

from __future__ import annotations

import html
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from aigc.apps.support.desk import SupportDesk
from aigc.apps.support.sites import MAX_ORIGINS, SiteStore
from aigc.server import kb_routes
from aigc.server.app_http import path_id, read_body
from aigc.server.auth import principal_of
from aigc.server.errors import APIError

router = APIRouter(prefix="/api/support")


class SiteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    origins: list[str] | None = Field(None, max_length=MAX_ORIGINS)
    persona: str | None = Field(None, max_length=4000)
    rules: str | None = Field(None, max_length=8000)
    greeting: str | None = Field(None, max_length=1000)
    language: Literal["auto", "zh", "en"] | None = None
    knowledge_base_ids: list[int] | None = Field(None, max_length=10)
    model: str | None = Field(None, max_length=200)
    handoff_on_no_source: bool | None = None


class StaffMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=8000)


class StateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["claim", "resolve", "assistant"]


def _sites(request: Request) -> SiteStore:
    return SiteStore(request.app.state.webapp.db, principal_of(request).owner)


def _desk(request: Request) -> SupportDesk:
    return SupportDesk(request.app.state.webapp.db)


def _with_embed(request: Request, site: dict[str, Any]) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    if request.headers.get("x-forwarded-proto") == "https" and base.startswith("http://"):
        base = "https://" + base[len("http://"):]
    tag = (f'<script src="{html.escape(base)}/widget.js" data-site="{html.escape(site["public_key"])}" '
           'async></script>')
    return {**site, "embed_code": tag}


async def _checked(request: Request, body: SiteIn) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    if body.model:
        request.app.state.webapp.backends.get(body.model)  # 404 for a model this server does not know
    if body.knowledge_base_ids is not None:
        fields["knowledge_base_ids"] = await kb_routes.check_knowledge_ids(request, body.knowledge_base_ids)
    return fields


@router.get("/sites")
async def list_sites(request: Request) -> JSONResponse:
    sites = await run_in_threadpool(_sites(request).list)
    return JSONResponse({"data": [_with_embed(request, s) for s in sites]})


@router.post("/sites", status_code=201)
async def create_site(request: Request) -> JSONResponse:
    body = await read_body(request, SiteIn)
    if not body.name:
        raise APIError(422, "name is required", param="name", code="missing_field")
    fields = await _checked(request, body)
    name, origins = fields.pop("name"), fields.pop("origins", None) or []
    site = await run_in_threadpool(lambda: _sites(request).create(name, origins, **fields))
    return JSONResponse(_with_embed(request, site), status_code=201)


@router.get("/sites/{site_id}")
async def get_site(site_id: str, request: Request) -> JSONResponse:
    site = await run_in_threadpool(_sites(request).get, path_id(site_id, "support site"))
    return JSONResponse(_with_embed(request, site))


@router.patch("/sites/{site_id}")
async def update_site(site_id: str, request: Request) -> JSONResponse:
    sid = path_id(site_id, "support site")
    body = await read_body(request, SiteIn)
    fields = await _checked(request, body)
    site = await run_in_threadpool(lambda: _sites(request).update(sid, **fields))
    return JSONResponse(_with_embed(request, site))


@router.post("/sites/{site_id}/rotate-key")
async def rotate_key(site_id: str, request: Request) -> JSONResponse:
    site = await run_in_threadpool(_sites(request).rotate_key, path_id(site_id, "support site"))
    return JSONResponse(_with_embed(request, site))


@router.delete("/sites/{site_id}", status_code=204)
async def delete_site(site_id: str, request: Request) -> Response:
    await run_in_threadpool(_sites(request).delete, path_id(site_id, "support site"))
    return Response(status_code=204)


@router.get("/queue")
async def queue(request: Request, state: str = "open") -> JSONResponse:
    rows = await run_in_threadpool(_desk(request).queue, principal_of(request), state)
    return JSONResponse({"data": rows, "state": state,
                         "waiting": sum(1 for r in rows if r.get("handoff") == "waiting")})


@router.get("/conversations/{conversation_id}")
async def staff_conversation(conversation_id: str, request: Request) -> JSONResponse:
    cid = path_id(conversation_id, "conversation")
    return JSONResponse(await run_in_threadpool(_desk(request).conversation, principal_of(request), cid))


@router.post("/conversations/{conversation_id}/messages", status_code=201)
async def staff_reply(conversation_id: str, request: Request) -> JSONResponse:
    cid = path_id(conversation_id, "conversation")
    body = await read_body(request, StaffMessageIn)
    web = request.app.state.webapp
    if cid in web.active:  # the assistant is still answering: let it finish (or stop) first
        web.active[cid].stop()
    message = await run_in_threadpool(_desk(request).staff_reply, principal_of(request), cid, body.content)
    return JSONResponse(message, status_code=201)


@router.post("/conversations/{conversation_id}/state")
async def set_state(conversation_id: str, request: Request) -> JSONResponse:
    cid = path_id(conversation_id, "conversation")
    body = await read_body(request, StateIn)
    return JSONResponse(await run_in_threadpool(_desk(request).set_state, principal_of(request), cid, body.action))
