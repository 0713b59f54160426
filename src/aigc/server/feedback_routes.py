"""Rated replies as training data, for administrators (the dashboard's download):

    GET /api/feedback/export?format=kto|dpo|sft[&model=M][&owner=USER]   -> JSON Lines

The records are `aigc data export-feedback`'s (apps/feedback_export.py): TRL's conversational
format, ready for `aigc train kto|dpo|sft` or `datasets.load_dataset("json", ...)`. Everyone's
conversations unless `owner` names an account; on a server without accounts the single user is the
administrator. `X-Export-Summary` says how many records there are and what was left out.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from aigc.apps.feedback_export import FORMATS, export_feedback, jsonl_lines, owner_id
from aigc.server.auth import principal_of
from aigc.server.errors import APIError

router = APIRouter()


@router.get("/api/feedback/export")
async def export(request: Request, format: str = "kto", model: str | None = None,
                 owner: str | None = None) -> Response:
    if not principal_of(request).is_admin:
        raise APIError(403, "Only administrators export feedback.", code="admin_only")
    if format not in FORMATS:
        raise APIError(400, f"format must be one of {', '.join(FORMATS)}", param="format", code="invalid_value")
    db = request.app.state.webapp.db

    def build() -> tuple[str, str]:
        try:
            who = owner_id(db, owner)
        except LookupError as e:
            raise APIError(404, str(e), param="owner", code="user_not_found") from None
        records, summary = export_feedback(db, format, owner=who, model=model)
        return "".join(jsonl_lines(records)), summary.describe()

    body, described = await run_in_threadpool(build)
    return Response(body.encode("utf-8"), media_type="application/jsonl; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="feedback-{format}.jsonl"',
        # Header values are latin-1: the summary's 👍/👎 would not encode.
        "X-Export-Summary": described.replace("👍", "liked").replace("👎", "disliked"),
    })
