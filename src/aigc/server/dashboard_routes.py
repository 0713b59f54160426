"""The monitoring dashboard's API, for administrators (in single-user mode, the one user):

    GET /api/dashboard?window=5m|1h|24h|7d[&model=NAME]
 -> {window, seconds, step, start, now, model,
     totals {requests, errors, rate_limited, prompt_tokens, generation_tokens, cached_tokens,
             prefix_cache_hit_rate, tokens_per_s, ttft/itl/e2e {count, sum, mean, p50, p90, p95, p99},
             statuses, running_max, waiting_max, kv_usage_max},
     models {name: the same per model}, errors [{model, status, code, count}],
     series {t, requests, errors, rate_limited, prompt/generation_tokens_per_s, ttft/itl/e2e_pNN,
             running_max, waiting_max, kv_usage_max},   one value per step
     live [{model, running, waiting, kv_usage, kv_slots_used, kv_slots_total, spec_acceptance}],
     feedback {models [{model, up, down, replies, positive_rate}], templates [{template, name, runs, up, down,
               positive_rate}]},
     moderation {total, categories {category: {action: n}}, sources, models, series}}

Totals and series come from the metrics history (history.py), fed by the same request records as
/metrics; `live` is the engines' state now; feedback and moderation from the app database. `model`
narrows totals and series (the per-model table always lists every model).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from aigc.apps.reports import feedback_report, moderation_report
from aigc.server.auth import principal_of
from aigc.server.errors import APIError
from aigc.server.history import WINDOWS

router = APIRouter(prefix="/api/dashboard")


def _live(request: Request) -> list[dict[str, Any]]:
    out = []
    for name, s in request.app.state.backends.stats():
        out.append({"model": name, "running": s.running, "waiting": s.queued, "kv_usage": s.kv_usage,
                    "kv_slots_used": s.kv_slots_used, "kv_slots_total": s.kv_slots_total,
                    "spec_acceptance": s.spec_accepted_tokens / s.spec_draft_tokens if s.spec_draft_tokens else None})
    return out


def _report(request: Request, window: str, model: str | None) -> dict[str, Any]:
    body = request.app.state.metrics.history.query(window, model)
    web = request.app.state.webapp
    start, step = body["start"], body["step"]
    body["feedback"] = feedback_report(web.db, start, web.templates.builtin)
    body["moderation"] = moderation_report(web.db, start, step, len(body["series"]["t"]))
    body["live"] = _live(request)
    body["served"] = request.app.state.backends.names()
    return body


@router.get("")
async def dashboard(request: Request, window: str = "1h", model: str | None = None) -> JSONResponse:
    if not principal_of(request).is_admin:
        raise APIError(403, "Only administrators see the dashboard.", code="admin_only")
    if window not in WINDOWS:
        raise APIError(400, f"window must be one of {', '.join(WINDOWS)}.", param="window", code="invalid_value")
    if model is not None and len(model) > 200:
        raise APIError(400, "model is longer than 200 characters.", param="model", code="invalid_value")
    return JSONResponse(await run_in_threadpool(_report, request, window, model or None))
