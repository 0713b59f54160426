"""The studio's API: templates (built-in + users'), rendering, streamed runs, import/export.

    GET    /api/templates                 all templates (built-in first)
    POST   /api/templates                 create a user template           -> 201
    GET    /api/templates/export          users' templates (or ?ids=a,b) as one JSON document
    POST   /api/templates/import          create user templates from such a document -> 201
    GET    /api/templates/{id}            one template
    PUT    /api/templates/{id}            replace a user template (version + 1; built-in: 403)
    DELETE /api/templates/{id}            delete a user template (built-in: 403)
    POST   /api/templates/{id}/render     {values} -> the prompt, model and params it would use
    POST   /api/templates/{id}/run        {values, model?, params?} -> SSE (see apps/studio/runner.py)
    PUT    /api/templates/runs/{run_id}/feedback   {rating: 1 | -1, comment?}: 👍/👎 on a run's output
    DELETE /api/templates/runs/{run_id}/feedback   take the rating back
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from aigc.apps.chat.model import GenerationParams
from aigc.apps.chat.replies import CannedReply, context_report, fit_reply, ground
from aigc.apps.studio.catalog import StudioTemplate, choose_model
from aigc.apps.studio.runner import NoJSONModeError, plan_run, studio_events, studio_messages
from aigc.apps.studio.runs import StudioRuns
from aigc.server import kb_routes
from aigc.server.app_http import as_sse, read_body, read_json
from aigc.server.app_models import pick_model_name
from aigc.server.app_schemas import FeedbackIn, TemplateRunIn
from aigc.server.auth import principal_of
from aigc.server.errors import APIError
from aigc.server.request_log import RequestRecord, request_record
from aigc.server.sse import EventStreamResponse

router = APIRouter(prefix="/api/templates")


def _web(request: Request) -> Any:
    return request.app.state.webapp


def _templates(request: Request) -> Any:
    """Built-in templates and the request's principal's own (another user's are not found)."""
    return _web(request).templates.scoped(principal_of(request).owner)


def _card(web: Any, t: StudioTemplate) -> dict[str, Any]:
    """A template as the UI needs it, with the model it would run on here."""
    served = web.backends.names()
    return {**t.to_dict(), "resolved_model": choose_model(t, served, web.settings.studio_models)}


def _plan(web: Any, t: StudioTemplate, body: TemplateRunIn, record: RequestRecord | None = None
          ) -> tuple[str, Any, GenerationParams]:
    """The prompt, the model (counting its tokens into `record`, the run's request) and parameters."""
    try:  # the eval runner (apps/evals) plans its studio runs with the same function
        prompt, params = plan_run(t, body.values, body.params.model_dump(exclude_unset=True) if body.params else None,
                                  body.output)
    except NoJSONModeError as e:
        raise APIError(400, str(e), param="output", code="invalid_value") from None
    name = body.model or choose_model(t, web.backends.names(), web.settings.studio_models)
    return prompt, web.model(pick_model_name(web.backends, name), record), params


@router.get("")
async def list_templates(request: Request) -> JSONResponse:
    web = _web(request)
    templates = await run_in_threadpool(_templates(request).list)
    return JSONResponse({"data": [_card(web, t) for t in templates]})


@router.post("", status_code=201)
async def create_template(request: Request) -> JSONResponse:
    web = _web(request)
    data = await read_json(request)
    return JSONResponse(_card(web, await run_in_threadpool(_templates(request).create, data)), status_code=201)


@router.get("/export")
async def export_templates(request: Request, ids: str | None = None) -> JSONResponse:
    chosen = [i for i in (ids or "").split(",") if i]
    doc = await run_in_threadpool(_templates(request).export, chosen or None)
    return JSONResponse(doc, headers={"Content-Disposition": 'attachment; filename="aigc-templates.json"'})


@router.post("/import", status_code=201)
async def import_templates(request: Request) -> JSONResponse:
    web = _web(request)
    data = await read_json(request)
    created = await run_in_threadpool(_templates(request).import_, data)
    return JSONResponse({"data": [_card(web, t) for t in created]}, status_code=201)


@router.get("/{template_id}")
async def get_template(template_id: str, request: Request) -> JSONResponse:
    web = _web(request)
    return JSONResponse(_card(web, await run_in_threadpool(_templates(request).get, template_id)))


@router.put("/{template_id}")
async def update_template(template_id: str, request: Request) -> JSONResponse:
    web = _web(request)
    data = await read_json(request)
    return JSONResponse(_card(web, await run_in_threadpool(_templates(request).update, template_id, data)))


@router.delete("/{template_id}", status_code=204)
async def delete_template(template_id: str, request: Request) -> Response:
    await run_in_threadpool(_templates(request).delete, template_id)
    return Response(status_code=204)


@router.post("/{template_id}/render")
async def render_template(template_id: str, request: Request) -> JSONResponse:
    web = _web(request)
    body = await read_body(request, TemplateRunIn)
    t = await run_in_threadpool(_templates(request).get, template_id)
    prompt, chat, params = await run_in_threadpool(_plan, web, t, body)  # renders off the event loop
    return JSONResponse({"template": t.id, "version": t.version, "prompt": prompt, "system": t.system,
                         "model": chat.name, "params": params.to_dict(),
                         "prompt_tokens": chat.count_tokens(prompt)})


@router.post("/{template_id}/run", response_model=None)
async def run_template(template_id: str, request: Request) -> EventStreamResponse:
    web = _web(request)
    body = await read_body(request, TemplateRunIn)
    t = await run_in_threadpool(_templates(request).get, template_id)
    prompt, chat, params = await run_in_threadpool(_plan, web, t, body, request_record(request))  # off the loop
    kb_ids = await kb_routes.check_knowledge_ids(request, body.knowledge_base_ids) or []
    messages, sources, canned = await run_in_threadpool(
        ground, studio_messages(t, prompt), kb_ids, kb_routes.retriever_for(request))
    fitted = await run_in_threadpool(fit_reply, chat, params, messages)
    record = request_record(request)
    record.model, record.prompt_tokens = chat.name, fitted.used
    stream = CannedReply(canned, fitted.used) if canned is not None else await chat.stream(fitted, params)
    try:
        await run_in_threadpool(_runs(request).add, record.id, t.id, t.version, chat.name)
    except BaseException:
        stream.cancel()
        raise
    events = studio_events(t, prompt, chat.name, stream, context_report(chat, fitted, params.max_tokens),
                           sources=sources, run_id=record.id)
    return EventStreamResponse(as_sse(events), record, on_close=stream.cancel)


def _runs(request: Request) -> StudioRuns:
    """The request's principal's studio runs (another user's are not found)."""
    return StudioRuns(_web(request).db, principal_of(request).owner)


@router.put("/runs/{run_id}/feedback")
async def rate_run(run_id: str, request: Request) -> JSONResponse:
    body = await read_body(request, FeedbackIn)
    return JSONResponse(await run_in_threadpool(_runs(request).rate, run_id[:64], body.rating, body.comment))


@router.delete("/runs/{run_id}/feedback", status_code=204)
async def unrate_run(run_id: str, request: Request) -> Response:
    await run_in_threadpool(_runs(request).clear, run_id[:64])
    return Response(status_code=204)
