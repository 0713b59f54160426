"""Eval runs in the app database: started, advanced item by item, finished with every result.

Runs are the deployment's, not a user's (they measure models, not anyone's data): the server shows
them to administrators only, and a run records who started it by name.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from aigc.apps.chat.conversations import NotFoundError, iso
from aigc.apps.evals.runner import ItemResult, RunReport
from aigc.apps.evals.sets import EvalSet
from aigc.store import Database
from aigc.store.models import EvalResult, EvalRun, utcnow

MAX_LIST = 1000


def run_dict(r: EvalRun) -> dict[str, Any]:
    summary = r.summary or {}
    return {"id": r.id, "set": r.set_name, "set_digest": r.set_digest, "template": r.template,
            "template_version": r.template_version, "model": r.model, "status": r.status, "source": r.source,
            "started_by": r.started_by, "total": r.total, "done": r.done, "passed": r.passed,
            "pass_rate": round(r.passed / r.done, 4) if r.done and r.status == "done" else None,
            "checks": summary.get("checks"), "seconds": summary.get("seconds"),
            "gate": r.options.get("gate"), "limit": r.options.get("limit"), "judges": r.options.get("judges", []),
            "error": r.error, "created_at": iso(r.created_at), "finished_at": iso(r.finished_at)}


def _result_dict(r: EvalResult) -> dict[str, Any]:
    return {"position": r.position, "id": r.item_id, "passed": r.passed, "prompt": r.prompt, "output": r.output,
            "checks": r.checks, "finish_reason": r.finish_reason, "completion_tokens": r.completion_tokens,
            "error": r.error}


class EvalRunStore:
    def __init__(self, db: Database):
        self.db = db

    def start(self, eval_set: EvalSet, model: str, *, total: int, template_version: int | None = None,
              source: str = "cli", started_by: str = "", gate: float | None = None,
              limit: int | None = None) -> dict[str, Any]:
        with self.db.session() as s:
            run = EvalRun(set_name=eval_set.name, set_digest=eval_set.digest, template=eval_set.template,
                          template_version=template_version, model=model, status="running", source=source,
                          started_by=started_by, total=total,
                          options={"gate": gate, "limit": limit, "judges": eval_set.judge_models})
            s.add(run)
            s.flush()
            return run_dict(run)

    def progress(self, run_id: int, done: int) -> None:
        with self.db.session() as s:
            s.execute(update(EvalRun).where(EvalRun.id == run_id, EvalRun.status == "running").values(done=done))

    def finish(self, run_id: int, report: RunReport) -> dict[str, Any]:
        """The run's results and summary, in one transaction (a run is either whole or not done)."""
        with self.db.session() as s:
            run = self._get(s, run_id)
            for position, item in enumerate(report.items):
                s.add(_result_row(run_id, position, item))
            run.status, run.done, run.passed = "done", len(report.items), report.passed
            run.summary = {k: v for k, v in report.summary().items() if k in ("checks", "seconds", "pass_rate")}
            run.template_version = report.template_version
            run.finished_at = utcnow()
            s.flush()
            return run_dict(run)

    def fail(self, run_id: int, error: str, status: str = "failed") -> None:
        with self.db.session() as s:
            s.execute(update(EvalRun).where(EvalRun.id == run_id, EvalRun.status == "running")
                      .values(status=status, error=error[:2000], finished_at=utcnow()))

    def interrupt_running(self, except_ids: set[int] | frozenset[int] = frozenset()) -> int:
        """Runs still marked running that no one runs any more (the server stopped mid-run)."""
        with self.db.session() as s:
            result = s.execute(update(EvalRun).where(EvalRun.status == "running", EvalRun.id.not_in(except_ids))
                               .values(status="interrupted", finished_at=utcnow()))
            return int(result.rowcount or 0)

    def _get(self, s: Any, run_id: int) -> EvalRun:
        run = s.get(EvalRun, run_id)
        if run is None:
            raise NotFoundError("eval run", run_id)
        return run

    def get(self, run_id: int, *, results: bool = True) -> dict[str, Any]:
        with self.db.session() as s:
            out = run_dict(self._get(s, run_id))
            if results:
                rows = s.scalars(select(EvalResult).where(EvalResult.run_id == run_id).order_by(EvalResult.position))
                out["results"] = [_result_dict(r) for r in rows]
            return out

    def list(self, *, model: str | None = None, set_name: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Runs, newest first (optionally one model's or one set's)."""
        q = select(EvalRun).order_by(EvalRun.id.desc()).limit(max(1, min(limit, MAX_LIST)))
        if model is not None:
            q = q.where(EvalRun.model == model)
        if set_name is not None:
            q = q.where(EvalRun.set_name == set_name)
        with self.db.session() as s:
            return [run_dict(r) for r in s.scalars(q)]


def _result_row(run_id: int, position: int, item: ItemResult) -> EvalResult:
    return EvalResult(run_id=run_id, position=position, item_id=item.item_id[:100], passed=item.passed,
                      prompt=item.prompt, output=item.output, checks=[c.to_dict() for c in item.checks],
                      finish_reason=(item.finish_reason or None) and item.finish_reason[:16],
                      completion_tokens=item.completion_tokens, error=item.error)
