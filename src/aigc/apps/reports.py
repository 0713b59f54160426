"""The dashboard's reports from the app database, over every owner (administrators read them):
👍/👎 per model (ratings of chat replies) and per studio template (ratings of studio runs), and
moderation hits (the moderation log) per category, action, source and time step.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from aigc.apps.studio.catalog import StudioTemplate
from aigc.apps.studio.library import USER_PREFIX
from aigc.store import Database, Feedback, Message, UserTemplate
from aigc.store.models import ModerationEvent, StudioRun


def _since(start: float) -> datetime:
    return datetime.fromtimestamp(start, UTC)


def _epoch(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()  # SQLite gives naive UTC back


def feedback_report(db: Database, start: float, builtin: dict[str, StudioTemplate]) -> dict[str, Any]:
    """Ratings given since `start` (Unix time): per model (with the replies it wrote meanwhile,
    so the share rated shows) and per studio template (with its runs)."""
    since = _since(start)
    with db.session() as s:
        ratings = s.execute(select(Message.model, Feedback.rating, func.count())
                            .join(Message, Feedback.message_id == Message.id)
                            .where(Feedback.updated_at >= since).group_by(Message.model, Feedback.rating)).all()
        replies = {model or "": n for model, n in s.execute(select(Message.model, func.count()).where(
            Message.role == "assistant", Message.created_at >= since).group_by(Message.model))}
        runs = s.execute(select(StudioRun.template_id, StudioRun.rating, func.count())
                         .where(StudioRun.created_at >= since).group_by(StudioRun.template_id, StudioRun.rating)).all()
        by_model: dict[str, Counter[str]] = {}
        for model, rating, n in ratings:
            by_model.setdefault(model or "", Counter())["up" if rating > 0 else "down"] += n
        by_template: dict[str, Counter[str]] = {}
        for template_id, rating, n in runs:
            c = by_template.setdefault(template_id, Counter())
            c["runs"] += n
            if rating is not None:
                c["up" if rating > 0 else "down"] += n
        names = {t.id: t.name for t in builtin.values()}
        user_ids = [int(t[len(USER_PREFIX):]) for t in by_template if t.startswith(USER_PREFIX)
                    and t[len(USER_PREFIX):].isdigit()]
        if user_ids:
            for row_id, spec in s.execute(select(UserTemplate.id, UserTemplate.spec).where(UserTemplate.id.in_(user_ids))):
                names[f"{USER_PREFIX}{row_id}"] = (spec or {}).get("name") or {}
    models = [{"model": m, "up": c["up"], "down": c["down"], "replies": replies.get(m, 0),
               "positive_rate": c["up"] / (c["up"] + c["down"])}
              for m, c in sorted(by_model.items())]
    templates = [{"template": t, "name": names.get(t) or {"en": t, "zh": t}, "runs": c["runs"], "up": c["up"],
                  "down": c["down"], "positive_rate": c["up"] / (c["up"] + c["down"]) if c["up"] + c["down"] else None}
                 for t, c in sorted(by_template.items())]
    return {"models": models, "templates": templates}


def moderation_report(db: Database, start: float, step: int, points: int) -> dict[str, Any]:
    """Flagged texts since `start`: per category and action, per source, per model, and how many
    fell in each of `points` steps of `step` seconds."""
    by_category: dict[str, Counter[str]] = {}
    by_source: Counter[str] = Counter()
    by_model: Counter[str] = Counter()
    series = [0] * points
    with db.session() as s:
        rows = s.execute(select(ModerationEvent.created_at, ModerationEvent.source, ModerationEvent.model,
                                ModerationEvent.action, ModerationEvent.categories)
                         .where(ModerationEvent.created_at >= _since(start)))
        total = 0
        for created_at, source, model, action, categories in rows:
            total += 1
            by_source[source] += 1
            by_model[model or ""] += 1
            for category in categories or []:
                by_category.setdefault(category, Counter())[action] += 1
            series[min(points - 1, max(0, int((_epoch(created_at) - start) // step)))] += 1
    return {"total": total, "categories": {c: dict(a) for c, a in sorted(by_category.items())},
            "sources": dict(by_source), "models": dict(by_model), "series": series}
