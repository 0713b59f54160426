"""Scheduled evaluations for administrators: the built-in eval sets, runs started in the background,
and runs per model over time with every item's result (apps/evals).

    GET  /api/evals/sets                 the built-in sets (one per studio template), with the model each would run on
    POST /api/evals/runs                 {set, model?, limit?} -> 202, the run (status "running")
    GET  /api/evals/runs                 ?model=&set=&limit= : runs, newest first, with their pass rates
    GET  /api/evals/runs/{id}            one run: progress (done / total) while it runs, every result once done

A run generates through the same `ChatModel` the studio and the chat use (`WebApp.model`), so it
shares the engine with users' requests, and its replies (the judges' too) count in /metrics and the
dashboard as theirs do: a request each, under the endpoint `/api/evals/runs` and the model's name
(the run outlives its POST, so each reply has a record of its own; `aigc eval run`, which serves
nothing, has no metrics). Only built-in sets can be run here: a set names a path only on the command
line (`aigc eval run FILE`), never over HTTP. Runs left "running" by a server that stopped are
marked "interrupted" the first time this process looks at the runs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from aigc.apps.chat.conversations import NotFoundError
from aigc.apps.chat.model import ChatModel
from aigc.apps.evals.runner import RunReport, run_eval_set
from aigc.apps.evals.sets import EvalSet, builtin_set_names, builtin_sets, load_eval_set
from aigc.apps.evals.store import EvalRunStore
from aigc.apps.studio.catalog import load_builtin_templates
from aigc.server.app_http import path_id, read_body
from aigc.server.app_models import pick_model_name
from aigc.server.auth import principal_of
from aigc.server.errors import APIError

log = logging.getLogger("aigc.server")

router = APIRouter(prefix="/api/evals")
RUNS_ENDPOINT = "/api/evals/runs"  # the endpoint label of a run's replies in /metrics


class EvalRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    set: str = Field(min_length=1, max_length=100)
    model: str | None = Field(None, max_length=200)
    limit: int | None = Field(None, ge=1, le=2000)


def _admin(request: Request) -> None:
    if not principal_of(request).is_admin:
        raise APIError(403, "Only administrators run and see evaluations.", code="admin_only")


def _tasks(request: Request) -> dict[int, asyncio.Task]:
    state = request.app.state
    if not hasattr(state, "eval_tasks"):
        state.eval_tasks = {}
    return state.eval_tasks


def _store(request: Request) -> EvalRunStore:
    """The runs' store; the first use in this process marks runs a stopped server left as interrupted."""
    store = EvalRunStore(request.app.state.webapp.db)
    if not getattr(request.app.state, "eval_swept", False):
        request.app.state.eval_swept = True
        swept = store.interrupt_running(set(_tasks(request)))
        if swept:
            log.warning("%d eval run(s) were left running by a previous server: marked interrupted", swept)
    return store


def _default_model(request: Request, eval_set: EvalSet) -> str:
    """As the studio chooses (catalog.choose_model): the set's model, else its template's, when served;
    else the first served model."""
    web = request.app.state.webapp
    template = load_builtin_templates()[eval_set.template] if eval_set.template else None
    preferred = [eval_set.model, (web.settings.studio_models or {}).get(eval_set.template or ""),
                 template.model if template else None]
    return pick_model_name(web.backends, None, *preferred)


@router.get("/sets")
async def list_sets(request: Request) -> JSONResponse:
    _admin(request)
    sets = await run_in_threadpool(builtin_sets)
    out = []
    for s in sets:
        try:
            model: str | None = _default_model(request, s)
        except APIError:
            model = None  # no model served (yet)
        out.append({**s.summary(), "resolved_model": model})
    return JSONResponse({"data": out})


@router.post("/runs", status_code=202)
async def start_run(request: Request) -> JSONResponse:
    _admin(request)
    body = await read_body(request, EvalRunIn)
    if body.set not in builtin_set_names():
        raise NotFoundError("eval set", body.set)
    eval_set = await run_in_threadpool(load_eval_set, body.set)
    web = request.app.state.webapp
    observe = request.app.state.metrics.observe

    def counted(name: str) -> ChatModel:  # each reply a request in /metrics and the dashboard, as the chat's
        return web.model(name, observe=observe, endpoint=RUNS_ENDPOINT)

    chat = counted(body.model or _default_model(request, eval_set))  # 404 unknown, 503 loading
    for judge in eval_set.judge_models:
        web.model(judge)  # a judge this server does not serve: refused now, not after every item
    template = load_builtin_templates()[eval_set.template] if eval_set.template else None
    total = min(len(eval_set.items), body.limit or len(eval_set.items))
    store = _store(request)
    run = await run_in_threadpool(lambda: store.start(
        eval_set, chat.name, total=total, template_version=template.version if template else None,
        source="server", started_by=principal_of(request).name, gate=eval_set.gate, limit=body.limit))
    tasks = _tasks(request)
    task = asyncio.create_task(_execute(store, run["id"], eval_set, chat, counted, body.limit))
    tasks[run["id"]] = task
    task.add_done_callback(lambda _t, rid=run["id"]: tasks.pop(rid, None))
    return JSONResponse(run, status_code=202)


async def _execute(store: EvalRunStore, run_id: int, eval_set: EvalSet, chat: Any, judges: Any,
                   limit: int | None) -> None:
    async def progress(_result: Any, done: int, _total: int) -> None:
        await asyncio.to_thread(store.progress, run_id, done)

    try:
        report: RunReport = await run_eval_set(eval_set, chat, judges=judges, limit=limit, on_item=progress)
        await asyncio.to_thread(store.finish, run_id, report)
        log.info("eval run %d (%s on %s): %d/%d passed", run_id, eval_set.name, chat.name, report.passed,
                 len(report.items))
    except asyncio.CancelledError:  # the server is stopping
        await asyncio.shield(asyncio.to_thread(store.fail, run_id, "the server stopped", "interrupted"))
        raise
    except Exception as e:
        log.error("eval run %d failed: %s: %s", run_id, type(e).__name__, e)
        await asyncio.to_thread(store.fail, run_id, f"{type(e).__name__}: {e}")


@router.get("/runs")
async def list_runs(request: Request, model: str | None = None, set: str | None = None,
                    limit: int = 200) -> JSONResponse:
    _admin(request)
    store = _store(request)
    runs = await run_in_threadpool(lambda: store.list(model=model, set_name=set, limit=limit))
    return JSONResponse({"data": runs})


@router.get("/runs/{run_id}")
async def get_run(run_id: str, request: Request) -> JSONResponse:
    _admin(request)
    rid = path_id(run_id, "eval run")
    store = _store(request)
    return JSONResponse(await run_in_threadpool(store.get, rid))
