"""Moderation in the serving path: every generative backend the registry hands out is wrapped, so
the OpenAI routes, the Responses API, the web app, the studio and the support widget -- local
models and `--remote` ones alike -- are guarded the same way.

Modes (`--moderation`): `off`; `log` (check and record, change nothing); `warn` (the same, and the
answer carries a `moderation` note); `block`:
- the input (the last user turn, or the prompt) is checked before generation; a flagged one is
  answered with a refusal in the user's language, `finish_reason: "content_filter"`, and the
  model is never asked;
- the output is checked while it streams: text is held back per choice until its window (a
  sentence, or `window_tokens`) passes, together with the tail already released, so a flagged
  continuation is cut before anyone sees it and that choice ends with `content_filter`. Outputs
  are judged by the lexicon unless `output_model` is set (see ModerationPolicy); inputs also by
  the semantic layer unless `semantic_input` is off.

Checks run off the event loop; each flagged text is counted in Prometheus and written to the
moderation log (text only if the policy keeps it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from aigc.apps.chat.replies import language_of
from aigc.safety.moderation import CATEGORIES, ModerationResult, Moderator
from aigc.server.generation import ChoiceDelta, GenerationStream

log = logging.getLogger("aigc.safety")

MODES = ("off", "log", "warn", "block")
_SENTENCE_END = re.compile(r"[。！？!?；;\n]|[.](?:\s|$)")
CONTEXT_CHARS = 240  # released text checked again with each new window (harm split across windows)

CATEGORY_NAMES_ZH = {"harassment": "骚扰", "harassment/threatening": "骚扰/威胁", "hate": "仇恨",
                     "hate/threatening": "仇恨/威胁", "illicit": "违法", "illicit/violent": "违法/暴力",
                     "self-harm": "自我伤害", "self-harm/intent": "自我伤害/意图",
                     "self-harm/instructions": "自我伤害/方法", "sexual": "色情", "sexual/minors": "涉及未成年人的色情",
                     "violence": "暴力", "violence/graphic": "暴力/血腥"}


@dataclass
class ModerationPolicy:
    mode: str = "off"
    thresholds: dict[str, float] = field(default_factory=dict)  # per category, over the model's own
    window_tokens: int = 32
    check_input: bool = True
    check_output: bool = True
    # Outputs are judged by the lexicon alone unless this is on: on the bundled model's ordinary
    # answers the small classifier still flags about one in three (BENCHMARKS.md), which would cut
    # good answers; the lexicon's phrases are harmful in any context.
    output_model: bool = False
    # Inputs also go through the semantic layer (e5 vectors + a head: catches phrasings no training
    # seed has; ~20 ms for a short prompt); off: the classifier and lexicon only (a few ms).
    semantic_input: bool = True
    store_text: bool = False  # keep flagged text in the moderation log

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"--moderation {self.mode!r}: expected one of {', '.join(MODES)}")
        unknown = set(self.thresholds) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"moderation thresholds for unknown categories: {', '.join(sorted(unknown))}")
        if any(not 0 < v <= 1 for v in self.thresholds.values()):
            raise ValueError("moderation thresholds must be between 0 and 1")
        if self.window_tokens < 1:
            raise ValueError("moderation window_tokens must be at least 1")

    @classmethod
    def load(cls, mode: str | None, path: Path | None) -> ModerationPolicy:
        """The settings file's (YAML or JSON, optional) policy; a mode given as a flag wins over its `mode`."""
        options: dict[str, Any] = {}
        if path is not None:
            import yaml

            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as e:
                raise ValueError(f"--moderation-config {path}: {e.strerror}") from None
            options = (json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)) or {}
            if not isinstance(options, dict):
                raise ValueError(f"--moderation-config {path}: expected a mapping of settings")
            allowed = {"thresholds", "window_tokens", "check_input", "check_output", "output_model", "semantic_input",
                       "store_text", "mode"}
            unknown = set(options) - allowed
            if unknown:
                raise ValueError(f"--moderation-config {path}: unknown setting(s) {', '.join(sorted(unknown))} "
                                 f"(known: {', '.join(sorted(allowed))})")
        file_mode = options.pop("mode", None)
        return cls(mode=mode or file_mode or "off", **options)


def refusal(categories: list[str], language: str) -> str:
    if language == "zh":
        names = "、".join(CATEGORY_NAMES_ZH.get(c, c) for c in categories)
        return f"抱歉，这个请求被内容安全策略拦截了（类别：{names}），我不能协助。"
    return f"Sorry, I can't help with that: the request was blocked by the content policy ({', '.join(categories)})."


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") if isinstance(p, dict) else str(getattr(p, "text", "") or "")
                         for p in content)
    return ""


def request_text(req: Any) -> str:
    """What the user asked: the last user turn of a chat, or the prompt(s) of a completion."""
    messages = getattr(req, "messages", None)
    if messages is not None:
        for m in reversed(messages):
            role = m.get("role") if isinstance(m, dict) else getattr(m, "role", None)
            if role == "user":
                return _content_text(m.get("content") if isinstance(m, dict) else getattr(m, "content", None))
        return ""
    prompt = getattr(req, "prompt", None)
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    return ""


Recorder = Callable[[dict[str, Any]], None]


class ModerationGuard:
    def __init__(self, policy: ModerationPolicy, moderator: Callable[[], Moderator], metrics: Any = None,
                 recorder: Recorder | None = None):
        self.policy = policy
        self._moderator = moderator
        self.metrics = metrics
        self.recorder = recorder

    @property
    def active(self) -> bool:
        return self.policy.mode != "off"

    def wrap(self, backend: Any) -> Any:
        return GuardedBackend(backend, self) if self.active else backend

    async def check(self, text: str, *, output: bool = False) -> ModerationResult:
        moderator = self._moderator()
        if output and not self.policy.output_model:
            return moderator.lexicon_only(text)  # microseconds: no thread needed
        # Streamed windows take the fast path: the semantic layer would cost more per window than
        # the tokens it guards take to generate.
        semantic = self.policy.semantic_input and not output
        result = (await run_in_threadpool(lambda: moderator.check([text], semantic=semantic)))[0]
        if self.policy.thresholds:
            flags = {c: result.category_scores[c] >= self.policy.thresholds.get(c, moderator.thresholds.get(c, 0.5))
                     for c in CATEGORIES}
            result.categories = flags
            result.flagged = any(flags.values())
        return result

    def note(self, result: ModerationResult, source: str, model: str, text: str) -> str:
        """Count and log a check; returns the action taken."""
        action = self.policy.mode if result.flagged else "none"
        if self.metrics is not None:
            self.metrics.moderation([result], source=source, action=action)
        if result.flagged:
            top = max(result.flagged_categories, key=lambda c: result.category_scores[c])
            log.info("moderation %s %s: %s (%.2f) on %s", source, action, ",".join(result.flagged_categories),
                     result.category_scores[top], model)
            if self.recorder is not None:
                event = {"source": source, "model": model, "action": action, "categories": result.flagged_categories,
                         "scores": {c: round(result.category_scores[c], 4) for c in result.flagged_categories},
                         "text": text[:4000] if self.policy.store_text else None}
                try:  # off the event loop: the answer does not wait for the log row
                    asyncio.get_running_loop().run_in_executor(None, self._record, event)
                except RuntimeError:
                    self._record(event)
        return action

    def _record(self, event: dict[str, Any]) -> None:
        try:
            self.recorder(event)  # type: ignore[misc]
        except Exception as e:  # noqa: BLE001 -- a log row must never break an answer
            log.warning("moderation event not recorded: %s", e)


class GuardedBackend:
    """A generative backend with moderation around chat() and complete(); anything else passes."""

    def __init__(self, inner: Any, guard: ModerationGuard):
        self._inner = inner
        self._guard = guard

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def chat(self, req: Any, request_id: str) -> GenerationStream:
        return await self._run(req, request_id, self._inner.chat)

    async def complete(self, req: Any, request_id: str) -> GenerationStream:
        return await self._run(req, request_id, self._inner.complete)

    async def _run(self, req: Any, request_id: str, call: Callable[..., Any]) -> GenerationStream:
        guard, policy = self._guard, self._guard.policy
        asked = request_text(req)
        choices = max(1, int(getattr(req, "n", 1) or 1))
        note: dict[str, Any] | None = None
        if policy.check_input and asked.strip():
            verdict = await guard.check(asked)
            action = guard.note(verdict, "input", self._inner.name, asked)
            if action == "block":
                return RefusalStream(choices, refusal(verdict.flagged_categories, language_of(asked)), verdict)
            if action == "warn":
                note = {"flagged": True, "source": "input", "categories": verdict.flagged_categories}
        stream = await call(req, request_id)
        if not policy.check_output and note is None:
            return stream
        return GuardedStream(stream, guard, self._inner.name, note)


class RefusalStream:
    """The answer to a blocked input: the refusal, finish_reason content_filter, no model."""

    def __init__(self, choices: int, text: str, verdict: ModerationResult):
        self.choices = choices
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self._text = text
        self._verdict = verdict
        self._done = False

    async def __aiter__(self) -> AsyncIterator[ChoiceDelta]:
        if self._done:
            return
        self._done = True
        note = {"moderation": {"flagged": True, "source": "input", "categories": self._verdict.flagged_categories}}
        for i in range(self.choices):
            yield ChoiceDelta(i, self._text, finish_reason="content_filter", extra=note)

    def cancel(self) -> None:
        self._done = True


@dataclass
class _Choice:
    held: list[ChoiceDelta] = field(default_factory=list)
    text: str = ""  # held text
    tokens: int = 0
    released: str = ""  # the tail already sent (context for the next check)
    cut: bool = False


class GuardedStream:
    """The output side: hold, check, release (block); or check as it passes (log, warn)."""

    def __init__(self, inner: GenerationStream, guard: ModerationGuard, model: str,
                 note: dict[str, Any] | None = None):
        self._inner = inner
        self._guard = guard
        self._model = model
        self._note = note  # a warn-mode note for the input, sent with the first delta
        self.choices = inner.choices

    @property
    def prompt_tokens(self) -> int:
        return self._inner.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self._inner.completion_tokens

    @property
    def cached_tokens(self) -> int:
        return self._inner.cached_tokens

    def cancel(self) -> None:
        self._inner.cancel()

    def _with_note(self, delta: ChoiceDelta) -> ChoiceDelta:
        if self._note is not None:
            delta.extra = {**(delta.extra or {}), "moderation": self._note}
            self._note = None
        return delta

    async def __aiter__(self) -> AsyncIterator[ChoiceDelta]:
        policy = self._guard.policy
        blocking = policy.mode == "block" and policy.check_output
        state: dict[int, _Choice] = {}
        first_window = max(1, min(8, policy.window_tokens // 4))  # the first text goes out soon (TTFT)
        async for delta in self._inner:
            c = state.setdefault(delta.index, _Choice())
            if c.cut:
                continue
            if not policy.check_output:
                yield self._with_note(delta)
                continue
            c.held.append(delta)
            said = delta.reasoning + delta.text  # a reasoning model's thinking is shown too: checked alike
            c.text += said
            c.tokens += delta.tokens or (1 if said else 0)
            window = first_window if not c.released else policy.window_tokens
            boundary = delta.finish_reason is not None or c.tokens >= window or bool(_SENTENCE_END.search(said))
            if not boundary or not (c.text.strip() or delta.finish_reason is not None):
                if not blocking:  # log / warn: nothing is held back
                    for d in c.held:
                        yield self._with_note(d)
                    c.held = []
                continue
            verdict = await self._guard.check(c.released[-CONTEXT_CHARS:] + c.text, output=True) \
                if c.text.strip() else None
            action = self._guard.note(verdict, "output", self._model, c.text) if verdict is not None else "none"
            if action == "block":
                c.cut = True
                yield ChoiceDelta(delta.index, "", finish_reason="content_filter", extra={"moderation": {
                    "flagged": True, "source": "output", "categories": verdict.flagged_categories}})
                if all(s.cut for s in state.values()) and len(state) >= self.choices:
                    self._inner.cancel()
                    return
                continue
            if action == "warn" and verdict is not None:
                self._note = {"flagged": True, "source": "output", "categories": verdict.flagged_categories}
            for d in c.held:
                yield self._with_note(d)
            c.released = (c.released + c.text)[-CONTEXT_CHARS:]
            c.held, c.text, c.tokens = [], "", 0
        for index, c in state.items():  # a stream that ended without a finish reason: release what passed
            if c.cut or not c.held:
                continue
            verdict = await self._guard.check(c.released[-CONTEXT_CHARS:] + c.text, output=True) \
                if c.text.strip() else None
            if verdict is not None and self._guard.note(verdict, "output", self._model, c.text) == "block":
                yield ChoiceDelta(index, "", finish_reason="content_filter")
                continue
            for d in c.held:
                yield self._with_note(d)
