"""Running a studio template: its prompt as chat messages, and the events of its streamed output.

A run's text is not stored: "save to conversation" on the page imports the prompt and the output
as a new conversation (the transcript format). What a run leaves is metadata (runs.py: template,
version, model, time), which the user's 👍/👎 on the output rates.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aigc.apps.chat.model import GenerationParams, Reasoning, ReplyStream
from aigc.apps.chat.replies import error_body
from aigc.apps.studio.catalog import StudioTemplate, TemplateSpecError

log = logging.getLogger("aigc.apps.studio")

# The model writes better JSON when asked for it; the schema itself is enforced while decoding.
JSON_INSTRUCTION = "\n\nAnswer with JSON only."


class NoJSONModeError(TemplateSpecError):
    """JSON output asked of a template that declares no output_schema."""

    param = "output"


def plan_run(template: StudioTemplate, values: dict[str, Any], overrides: dict[str, Any] | None = None,
             output: str = "text") -> tuple[str, GenerationParams]:
    """The prompt and parameters of a run: the template's params under the caller's overrides, and
    in JSON mode the output schema. The studio's route and the eval runner both start here, so an
    eval measures what a user gets. Blocking (a user's template renders in the sandbox)."""
    prompt = template.render(values)
    params = GenerationParams.from_dict({**template.params, **(overrides or {})})
    if output == "json":
        if template.output_schema is None:
            raise NoJSONModeError(f"template {template.id!r} declares no output_schema, so it has no JSON output mode")
        params.json_schema = template.output_schema
        prompt += JSON_INSTRUCTION
    return prompt, params


def studio_messages(template: StudioTemplate, prompt: str) -> list[dict[str, Any]]:
    system = [{"id": None, "role": "system", "content": template.system}] if template.system.strip() else []
    return system + [{"id": None, "role": "user", "content": prompt}]


async def studio_events(template: StudioTemplate, prompt: str, model: str, stream: ReplyStream,
                        context: dict[str, Any], sources: list[dict[str, Any]] | None = None,
                        run_id: str | None = None) -> AsyncIterator[dict[str, Any]]:
    """start {run_id, template, prompt, system, model, context, sources} -> delta {text}... -> done
    {text, finish_reason, sources} | error. `sources`: what a grounded run cited (None: not
    grounded); `run_id`: what the output's 👍/👎 names."""
    pieces: list[str] = []
    try:
        yield {"type": "start", "run_id": run_id, "template": template.id, "version": template.version,
               "prompt": prompt, "system": template.system, "model": model, "context": context, "sources": sources}
        async for piece in stream:
            if isinstance(piece, Reasoning):
                continue  # a studio run's output is the answer; the studio does not show thinking
            if piece:
                pieces.append(piece)
                yield {"type": "delta", "text": piece}
        finish = stream.finish_reason or "stop"
        yield {"type": "done", "text": "".join(pieces), "finish_reason": "stopped" if finish == "abort" else finish,
               "completion_tokens": stream.completion_tokens, "sources": sources}
    except Exception as e:
        log.warning("studio run of %s failed: %s: %s", template.id, type(e).__name__, e)
        yield {"type": "error", "text": "".join(pieces), "error": error_body(e)}
    finally:
        stream.cancel()
