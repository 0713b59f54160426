"""`aigc eval run SET --model M [--limit N] [--gate R] [--json]`: run an eval set (apps/evals) on a
model, print per-check pass rates and the total, and store the run in the app database.

Exit codes: 0, 1 when the pass rate is below the gate (`--gate`, else the set's own), 2 bad input.
The model is loaded as `aigc serve` loads it (server/app.py `load_local_backend`) and asked through
the same `ChatModel` the web app uses, so the run measures what the studio and the chat produce.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aigc.cli.common import add_database_arg, add_weight_args

BUNDLED = "smollm2-135m-instruct"


def register(sub) -> None:
    p = sub.add_parser("run", help="run an eval set (built-in or a YAML file) on a model; store and gate the run")
    p.add_argument("set", metavar="SET", help="a built-in set (a studio template's id, e.g. poem) or a YAML file")
    p.add_argument("--model", "-m", default=None,
                   help=f"default: the set's model, else its template's preferred model, else {BUNDLED}")
    p.add_argument("--models-dir", type=Path, default=None)
    add_weight_args(p)
    p.add_argument("--limit", type=int, default=None, help="run the first N items only")
    p.add_argument("--gate", type=float, default=None,
                   help="exit with 1 when the pass rate is below this (0-1; default: the set's gate; 0 turns it off)")
    p.add_argument("--json", action="store_true", help="print the report (every item's output and checks) as JSON")
    add_database_arg(p)
    p.set_defaults(func=run)


class _Models:
    """Models by name, each loaded once (the evaluated model and any judge), closed at the end."""

    def __init__(self, args: argparse.Namespace):
        from aigc.cli.common import settings_from

        self.settings = settings_from(args)
        self._models: dict[str, Any] = {}
        self._backends: list[Any] = []

    def __call__(self, name: str) -> Any:
        from aigc.server.app import load_local_backend
        from aigc.server.app_models import BackendChatModel

        if name not in self._models:
            backend = load_local_backend(name, self.settings)
            self._backends.append(backend)
            if not hasattr(backend, "chat"):
                raise ValueError(f"{name} is not a generative model (a classifier or an embedding model)")
            self._models[name] = BackendChatModel(backend, self.settings.max_context)
        return self._models[name]

    def close(self) -> None:
        for b in self._backends:
            b.close()


def _default_model(eval_set) -> str:
    if eval_set.model:
        return eval_set.model
    if eval_set.template:
        from aigc.apps.studio.catalog import load_builtin_templates

        return load_builtin_templates()[eval_set.template].model or BUNDLED
    return BUNDLED


def run(args: argparse.Namespace) -> int:
    from aigc.apps.evals.runner import run_eval_set
    from aigc.apps.evals.sets import load_eval_set
    from aigc.apps.evals.store import EvalRunStore
    from aigc.cli.common import open_database

    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1")
    if args.gate is not None and not 0 <= args.gate <= 1:
        raise ValueError("--gate is a pass rate between 0 and 1")
    eval_set = load_eval_set(args.set)
    gate = args.gate if args.gate is not None else eval_set.gate
    gate = gate or None  # 0: no gate
    name = args.model or _default_model(eval_set)
    total = min(len(eval_set.items), args.limit or len(eval_set.items))
    store = EvalRunStore(open_database(args))  # opened first: a bad database URL fails before the model loads
    models = _Models(args)
    try:
        model = models(name)
        for judge in eval_set.judge_models:
            models(judge)  # an unknown judge fails now, not after every item ran
        started = store.start(eval_set, name, total=total, gate=gate, limit=args.limit)
        try:
            report = asyncio.run(_run(run_eval_set, eval_set, model, models, args, total))
        except BaseException as e:
            store.fail(started["id"], str(e) or type(e).__name__,
                       "interrupted" if isinstance(e, KeyboardInterrupt) else "failed")
            raise
        stored = store.finish(started["id"], report)
    finally:
        models.close()
    met = gate is None or report.pass_rate >= gate
    if args.json:
        print(json.dumps({"run_id": stored["id"], **report.summary(), "gate": gate, "gate_passed": met,
                          "results": [r.to_dict() for r in report.items]}, ensure_ascii=False, indent=2))
    else:
        _print_report(report, gate, met, stored["id"], store.db.url.render_as_string(hide_password=True))
    return 0 if met else 1


async def _run(run_eval_set, eval_set, model, models, args, total):
    if args.json or not sys.stderr.isatty():
        return await run_eval_set(eval_set, model, judges=models, limit=args.limit)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"{eval_set.name} on {model.name}", total=total)
        return await run_eval_set(eval_set, model, judges=models, limit=args.limit,
                                  on_item=lambda _r, done, _n: progress.update(task, completed=done))


def _print_report(report, gate: float | None, met: bool, run_id: int, url: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report.set} on {report.model}: {len(report.items)} items, {report.seconds:.1f} s")
    for col in ("check", "passed", "pass rate", "mean score"):
        table.add_column(col)
    for name, c in report.check_rates().items():
        label = name if c["required"] else f"{name} (measured, not required)"
        score = "" if c["mean_score"] is None else f"{c['mean_score']:.1f}"
        table.add_row(label, f"{c['passed']}/{c['total']}", f"{c['rate']:.0%}", score)
    table.add_row("[bold]total (items passing every required check)[/bold]",
                  f"{report.passed}/{len(report.items)}", f"[bold]{report.pass_rate:.0%}[/bold]", "")
    console = Console()
    console.print(table)
    failed = [r for r in report.items if not r.passed]
    for r in failed[:5]:
        why = r.error or "; ".join(f"{c.name}: {c.detail}" for c in r.checks if c.required and not c.passed)
        console.print(f"  failed {r.item_id}: {why}", markup=False, highlight=False)
    if len(failed) > 5:
        console.print(f"  … and {len(failed) - 5} more (--json shows every item)")
    if gate is not None:
        console.print(f"gate {gate:.2f}: {'met' if met else 'NOT met'} (pass rate {report.pass_rate:.2%})")
    console.print(f"stored as eval run #{run_id} in {url}", markup=False, highlight=False)
