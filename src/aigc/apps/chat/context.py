"""Context budget: fit a conversation into the model's window.

The system prompt is always kept; the oldest user/assistant turns are dropped first (a user
message and the replies after it go together), and the caller is told how many messages went so it
can say so. The newest user message is never dropped: if it alone does not fit, that is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aigc.tokenizer import Tokenizer


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


def fit_messages(tokenizer: Tokenizer, messages: list[dict[str, Any]], budget: int) -> FittedContext:
    """Render `messages` with the chat template so the prompt takes at most `budget` tokens."""
    system = [m for m in messages if m["role"] == "system"]
    turns = _turns([m for m in messages if m["role"] != "system"])
    dropped: list[dict[str, Any]] = []
    while True:
        kept = system + [m for t in turns for m in t]
        ids = tokenizer.apply_chat_template(kept, add_generation_prompt=True, tokenize=True)
        if len(ids) <= budget:
            return FittedContext(kept, ids, dropped, budget)
        if len(turns) <= 1:
            raise ContextOverflowError(
                f"the message needs {len(ids)} tokens but only {budget} fit in the context window; "
                "shorten it or the system prompt"
            )
        dropped.extend(turns.pop(0))
