"""Running a studio template: its prompt as chat messages, and the events of its streamed output.

Studio runs are not stored: "save to conversation" on the page imports the prompt and the output
as a new conversation (the transcript format), so a run the user does not keep leaves no trace.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aigc.apps.chat.model import Reasoning, ReplyStream
from aigc.apps.chat.replies import error_body
from aigc.apps.studio.catalog import StudioTemplate

log = logging.getLogger("aigc.apps.studio")


def studio_messages(template: StudioTemplate, prompt: str) -> list[dict[str, Any]]:
    system = [{"id": None, "role": "system", "content": template.system}] if template.system.strip() else []
    return system + [{"id": None, "role": "user", "content": prompt}]


async def studio_events(template: StudioTemplate, prompt: str, model: str, stream: ReplyStream,
                        context: dict[str, Any], sources: list[dict[str, Any]] | None = None
                        ) -> AsyncIterator[dict[str, Any]]:
    """start {template, prompt, system, model, context, sources} -> delta {text}... -> done {text,
    finish_reason, sources} | error. `sources`: what a grounded run cited (None: not grounded)."""
    pieces: list[str] = []
    try:
        yield {"type": "start", "template": template.id, "version": template.version, "prompt": prompt,
               "system": template.system, "model": model, "context": context, "sources": sources}
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
