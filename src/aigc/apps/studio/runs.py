"""Studio runs as metadata: which template (and version) ran on which model, when, and the user's
👍/👎 on its output. Neither the prompt nor the output is kept (runner.py); the rows are what the
dashboard's feedback per template counts.
"""

from __future__ import annotations

from typing import Any

from aigc.apps.chat.conversations import NotFoundError, iso
from aigc.store import Database
from aigc.store.models import StudioRun, utcnow


class StudioRuns:
    """One owner's runs (`owner` as in ConversationStore): another owner's run is "not found"."""

    def __init__(self, db: Database, owner: int | None = None):
        self.db = db
        self.owner = owner

    def scoped(self, owner: int | None) -> StudioRuns:
        return StudioRuns(self.db, owner)

    def add(self, run_id: str, template_id: str, version: int, model: str) -> None:
        with self.db.session() as s:
            s.add(StudioRun(id=run_id, user_id=self.owner, template_id=template_id, template_version=version,
                            model=model))

    def _run(self, s: Any, run_id: str) -> StudioRun:
        run = s.get(StudioRun, run_id)
        if run is None or run.user_id != self.owner:
            raise NotFoundError("studio run", run_id)
        return run

    def rate(self, run_id: str, rating: int, comment: str = "") -> dict[str, Any]:
        """👍 (+1) or 👎 (-1) on the run's output; replaces an earlier rating."""
        with self.db.session() as s:
            run = self._run(s, run_id)
            run.rating, run.comment, run.rated_at = rating, comment, utcnow()
            return {"run_id": run.id, "template": run.template_id, "model": run.model, "rating": run.rating,
                    "comment": run.comment, "rated_at": iso(run.rated_at)}

    def clear(self, run_id: str) -> None:
        with self.db.session() as s:
            run = self._run(s, run_id)
            run.rating, run.comment, run.rated_at = None, "", None
