"""Running an eval set on a model: each item generated the way the product generates it, then checked.

A template set's item is a studio run: `plan_run` (the template's prompt and params, as the
studio's route makes them), `studio_messages`, the model's `fit` and `stream`, and `studio_events`
(the route's event stream), so a gate on a template's set gates what a user of the studio gets. A
plain item is one chat message (and the set's system prompt) through the same `ChatModel.stream`
the web app's chat uses. The model is any `ChatModel`: the server's (local or `--remote`) or, for
`aigc eval run`, a local backend built the way `aigc serve` builds one (cli/eval_run_cmd.py).

Items run concurrently (the engine batches them). Sampling is reproducible: item i samples with
seed + i (the set's `params.seed`, default 0), unless the item names its own seed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aigc.apps.chat.model import ChatModel, GenerationParams, Reasoning
from aigc.apps.chat.replies import fit_reply
from aigc.apps.evals.sets import EvalItem, EvalSet
from aigc.apps.studio.catalog import StudioTemplate, load_builtin_templates
from aigc.apps.studio.runner import plan_run, studio_events, studio_messages
from aigc.eval.checks import Check, CheckResult

log = logging.getLogger("aigc.apps.evals")

ModelResolver = Callable[[str], ChatModel]  # a model name -> the model (raises for an unknown one)
ItemCallback = Callable[["ItemResult", int, int], Any]  # (result, done, total), as each item ends

CONCURRENCY = 8  # items in flight: enough to fill the engine's batch, not its whole queue
BUSY_RETRIES = 5  # a model answering 429 (queue full) is asked again, after a pause
JUDGE_PARAMS = {"temperature": 0.0, "top_p": 1.0, "seed": 0}  # a judge should not roll dice


@dataclass
class ItemResult:
    item_id: str
    prompt: str
    output: str
    checks: list[CheckResult]
    finish_reason: str | None = None
    completion_tokens: int = 0
    error: str | None = None  # the generation failed: every check counts as failed
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks if c.required)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.item_id, "passed": self.passed, "prompt": self.prompt, "output": self.output,
                "checks": [c.to_dict() for c in self.checks], "finish_reason": self.finish_reason,
                "completion_tokens": self.completion_tokens, "error": self.error, "seconds": round(self.seconds, 3)}


@dataclass
class RunReport:
    set: str
    model: str
    items: list[ItemResult]
    template: str | None = None
    template_version: int | None = None
    digest: str = ""
    seconds: float = 0.0
    limit: int | None = None
    judges: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.items)

    @property
    def pass_rate(self) -> float:
        return self.passed / len(self.items) if self.items else 0.0

    def check_rates(self) -> dict[str, dict[str, Any]]:
        """Per check name: passed, total, rate, and the mean score where the check scores."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.items:
            for c in r.checks:
                e = out.setdefault(c.name, {"passed": 0, "total": 0, "required": c.required, "scores": []})
                e["total"] += 1
                e["passed"] += c.passed
                if c.score is not None:
                    e["scores"].append(c.score)
        for e in out.values():
            e["rate"] = round(e["passed"] / e["total"], 4)
            scores = e.pop("scores")
            e["mean_score"] = round(sum(scores) / len(scores), 2) if scores else None
        return out

    def summary(self) -> dict[str, Any]:
        return {"set": self.set, "model": self.model, "template": self.template,
                "template_version": self.template_version, "digest": self.digest, "items": len(self.items),
                "passed": self.passed, "pass_rate": round(self.pass_rate, 4), "checks": self.check_rates(),
                "seconds": round(self.seconds, 2), "limit": self.limit, "judges": self.judges}


def _seeded(eval_set: EvalSet, item: EvalItem, index: int) -> dict[str, Any]:
    params = {**eval_set.params, **item.params}
    if "seed" not in item.params:
        params["seed"] = int(eval_set.params.get("seed", 0)) + index
    return params


async def _generate(model: ChatModel, messages: list[dict[str, Any]], params: GenerationParams,
                    template: StudioTemplate | None, prompt: str) -> tuple[str, str | None, int]:
    """(text, finish_reason, completion tokens) of one reply; a studio run goes through the
    studio's own event stream."""
    fitted = await asyncio.to_thread(fit_reply, model, params, messages)
    for attempt in range(BUSY_RETRIES + 1):
        try:
            stream = await model.stream(fitted, params)
            break
        except Exception as e:
            if getattr(e, "status_code", None) != 429 or attempt == BUSY_RETRIES:
                raise
            await asyncio.sleep(1.0 + attempt)
    if template is not None:
        async for event in studio_events(template, prompt, model.name, stream, {}):
            if event["type"] == "done":
                return event["text"], event["finish_reason"], int(event["completion_tokens"] or 0)
            if event["type"] == "error":
                raise RuntimeError(event["error"]["message"])
        raise RuntimeError("the studio run ended without a result")
    pieces: list[str] = []
    try:
        async for piece in stream:
            if not isinstance(piece, Reasoning):
                pieces.append(piece)
    finally:
        stream.cancel()
    return "".join(pieces), stream.finish_reason, stream.completion_tokens


async def _judge(check: Check, judges: ModelResolver | None, prompt: str, output: str,
                 references: list[str]) -> CheckResult:
    if judges is None:
        return check.failed("no judge model available here")
    try:
        judge = judges(check.value["model"])
        params = GenerationParams(**JUDGE_PARAMS, max_tokens=check.value["max_tokens"],
                                  json_schema=check.judge_schema())
        reply, _, _ = await _generate(judge, check.judge_messages(prompt, output, references), params, None, "")
    except Exception as e:
        return check.failed(f"the judge failed: {getattr(e, 'message', None) or e}")
    return check.judge_result(reply)


async def run_item(eval_set: EvalSet, item: EvalItem, index: int, model: ChatModel, *,
                   template: StudioTemplate | None = None, judges: ModelResolver | None = None) -> ItemResult:
    started = time.perf_counter()
    prompt = item.prompt
    try:
        overrides = _seeded(eval_set, item, index)
        if template is not None:
            prompt, params = await asyncio.to_thread(plan_run, template, item.values, overrides, item.output)
            messages = studio_messages(template, prompt)
        else:
            params = GenerationParams.from_dict(overrides)
            system = [{"role": "system", "content": eval_set.system}] if eval_set.system.strip() else []
            messages = system + [{"role": "user", "content": prompt}]
        output, finish, tokens = await _generate(model, messages, params, template, prompt)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        error = getattr(e, "message", None) or str(e) or type(e).__name__
        log.warning("eval %s item %s on %s failed: %s", eval_set.name, item.id, model.name, error)
        return ItemResult(item.id, prompt, "", [c.failed(f"no output: {error}") for c in item.checks],
                          error=error, seconds=time.perf_counter() - started)
    checks = [await _judge(c, judges, prompt, output, item.references) if c.kind == "judge"
              else c.run(output, item.references) for c in item.checks]
    return ItemResult(item.id, prompt, output, checks, finish, tokens, seconds=time.perf_counter() - started)


async def run_eval_set(eval_set: EvalSet, model: ChatModel, *, judges: ModelResolver | None = None,
                       limit: int | None = None, concurrency: int = CONCURRENCY,
                       on_item: ItemCallback | None = None) -> RunReport:
    """Every item (the first `limit`) generated and checked; results in the set's order."""
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")
    template = load_builtin_templates()[eval_set.template] if eval_set.template else None
    items = eval_set.items[:limit] if limit else list(eval_set.items)
    gate = asyncio.Semaphore(max(1, concurrency))
    done = 0
    started = time.perf_counter()

    async def one(index: int, item: EvalItem) -> ItemResult:
        nonlocal done
        async with gate:
            result = await run_item(eval_set, item, index, model, template=template, judges=judges)
        done += 1
        if on_item is not None:
            outcome = on_item(result, done, len(items))
            if asyncio.iscoroutine(outcome):
                await outcome
        return result

    results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    return RunReport(set=eval_set.name, model=model.name, items=list(results), template=eval_set.template,
                     template_version=template.version if template else None, digest=eval_set.digest,
                     seconds=time.perf_counter() - started, limit=limit, judges=eval_set.judge_models)
