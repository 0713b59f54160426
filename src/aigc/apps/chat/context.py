"""Context budget: fit a conversation into the model's window.

The system prompt is always kept; the oldest user/assistant turns are dropped first (a user
message and the replies after it go together), and the caller is told how many messages went so it
can say so. The newest user message is never dropped: if it alone does not fit, that is an error.

The prompt is rendered with the model's own chat template and counted with its tokenizer, so the
count is exact. The number of turns to drop is found by bisection (the prompt only shrinks as
turns go), so a conversation of a thousand messages costs about ten renders, not a thousand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class ChatTokenizer(Protocol):
    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = ...,
                            tokenize: bool = ...) -> Any: ...


class ContextOverflowError(ValueError):
    """Even the system prompt plus the newest message exceed the window."""


@dataclass
class FittedContext:
    messages: list[dict[str, Any]]
    prompt_ids: list[int]
    dropped: list[dict[str, Any]] = field(default_factory=list)
    budget: int = 0

    @property
    def used(self) -> int:
        return len(self.prompt_ids)


def _turns(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Group non-system messages into turns, each starting at a user message."""
    turns: list[list[dict[str, Any]]] = []
    for m in messages:
        if m["role"] == "user" or not turns:
            turns.append([m])
        else:
            turns[-1].append(m)
    return turns


def _template_view(m: dict[str, Any]) -> dict[str, Any]:
    """Only what the template reads: callers may carry their own keys (ids) on the messages."""
    return {"role": m["role"], "content": m["content"]}


def fit_messages(tokenizer: ChatTokenizer, messages: list[dict[str, Any]], budget: int) -> FittedContext:
    """Render `messages` with the chat template so the prompt takes at most `budget` tokens."""
    system = [m for m in messages if m["role"] == "system"]
    turns = _turns([m for m in messages if m["role"] != "system"])

    def render(drop: int) -> tuple[list[dict[str, Any]], list[int]]:
        kept = system + [m for t in turns[drop:] for m in t]
        ids = tokenizer.apply_chat_template([_template_view(m) for m in kept], add_generation_prompt=True,
                                            tokenize=True)
        return kept, list(ids)

    kept, ids = render(0)
    if len(ids) <= budget:
        return FittedContext(kept, ids, [], budget)
    last = max(len(turns) - 1, 0)  # the newest turn always stays
    kept_last, ids_last = render(last)
    if len(ids_last) > budget:
        raise ContextOverflowError(
            f"the message needs {len(ids_last)} tokens but only {budget} fit in the context window; "
            "shorten it or the system prompt"
        )
    lo, hi = 0, last  # render(lo) does not fit, render(hi) does
    best = (kept_last, ids_last)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        kept, ids = render(mid)
        if len(ids) <= budget:
            hi, best = mid, (kept, ids)
        else:
            lo = mid
    dropped = [m for t in turns[:hi] for m in t]
    return FittedContext(best[0], best[1], dropped, budget)
