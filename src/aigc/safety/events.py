"""The moderation log in the app database: what was flagged, where, for what, and what was done."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from aigc.apps.chat.conversations import iso
from aigc.store import Database
from aigc.store.models import ModerationEvent


class ModerationLog:
    def __init__(self, db: Database):
        self.db = db

    def add(self, event: dict[str, Any]) -> None:
        with self.db.session() as s:
            s.add(ModerationEvent(source=event["source"], model=event.get("model") or "", action=event["action"],
                                  categories=list(event["categories"]), scores=dict(event.get("scores") or {}),
                                  text=event.get("text")))

    def recent(self, limit: int = 200, category: str | None = None) -> dict[str, Any]:
        """The newest events, and counts per category and action over all of them."""
        with self.db.session() as s:
            rows = list(s.scalars(select(ModerationEvent).order_by(ModerationEvent.id.desc()).limit(5000)))
            total = int(s.scalar(select(func.count()).select_from(ModerationEvent)) or 0)
        counts: dict[str, dict[str, int]] = {}
        for e in rows:
            for c in e.categories:
                counts.setdefault(c, {}).setdefault(e.action, 0)
                counts[c][e.action] += 1
        shown = [e for e in rows if category is None or category in e.categories][:limit]
        return {"total": total, "counts": counts,
                "data": [{"id": e.id, "created_at": iso(e.created_at), "source": e.source, "model": e.model,
                          "action": e.action, "categories": e.categories, "scores": e.scores, "text": e.text}
                         for e in shown]}
