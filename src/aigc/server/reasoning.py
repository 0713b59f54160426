"""Reasoning models: the text a model writes between `<think>` and `</think>` before its answer.

Qwen3 and the DeepSeek-R1 distills think first, in a `<think>…</think>` block. As vLLM's reasoning
parsers and DeepSeek's API do, the block becomes `reasoning_content` and only the rest is the
answer's `content`. `ReasoningStream` is the one splitter: the local backend runs every chat
choice's text through it (before tool-call parsing, so a `<tool_call>` the model only thought
about is not called), streamed or not; tags split across tokens are held back until they decide.

- the output opens with `<think>` (after optional blanks): reasoning until `</think>`;
- the chat template already put `<think>` in the generation prompt (DeepSeek-R1, some Qwen3
  templates): the output starts inside the block (`opened=True`; a repeated opening tag is dropped);
- no opening tag: all of it is content, `</think>` or not (a tag mid-answer is text);
- the output ends inside the block (max_tokens): all of it is reasoning, no content.

Blanks just inside the block and just after `</think>` are dropped (templates put newlines there).
Which models are parsed: `--reasoning-parser auto` (default; templates or vocabularies that know
`<think>`), `think` (every model) or `none`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from aigc.tokenizer import Tokenizer

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
REASONING_PARSERS = ("auto", "none", "think")
ReasoningParser = Literal["auto", "none", "think"]


def model_thinks(tokenizer: Tokenizer, parser: ReasoningParser) -> bool:
    """Whether a model's chat output is split: per `parser`; "auto" when its chat templates write
    `<think>` or its vocabulary has both tags as tokens."""
    if parser != "auto":
        return parser == "think"
    if any(THINK_OPEN in t for t in tokenizer.chat_templates.values()):
        return True
    return tokenizer.token_to_id(THINK_OPEN) is not None and tokenizer.token_to_id(THINK_CLOSE) is not None


def prompt_opens_reasoning(tokenizer: Tokenizer, prompt_ids: list[int]) -> bool:
    """Whether the rendered prompt ends inside a think block (`…<think>` plus blanks), so the
    output starts with reasoning and no opening tag. Only the prompt's tail is decoded."""
    tail = tokenizer.decode(prompt_ids[-8:])
    return tail.rstrip().endswith(THINK_OPEN)


@dataclass
class ReasoningStream:
    """Splits a choice's streamed text into (reasoning, content). `push` and `finish` return the
    pieces that are decided; within one call reasoning always comes before content (the block
    opens only at the start and closes once)."""

    opened: bool = False  # the prompt already opened the block
    _state: str = "start"  # start (the opening not decided) | reasoning | content
    _buf: str = ""  # text held back: a tag that may be arriving, blanks that may be dropped
    _strip: bool = False  # drop the blanks that come next (just inside the block, just after it)

    @property
    def in_reasoning(self) -> bool:
        """Inside the block (its opening seen, or given by the prompt, and no closing yet)."""
        return self._state == "reasoning"

    def push(self, text: str) -> tuple[str, str]:
        self._buf += text
        reasoning = content = ""
        if self._state == "start":
            head = self._buf.lstrip()
            if len(head) < len(THINK_OPEN) and THINK_OPEN.startswith(head):
                return "", ""  # blanks, or the start of "<think>": not decided yet
            if head.startswith(THINK_OPEN):
                self._state, self._buf, self._strip = "reasoning", head[len(THINK_OPEN):], True
            elif self.opened:
                self._state, self._strip = "reasoning", True
            else:
                self._state = "content"
        if self._state == "reasoning":
            if self._strip:
                self._buf = self._buf.lstrip()
                self._strip = not self._buf
            end = self._buf.find(THINK_CLOSE)
            if end < 0:
                # Held: a partial "</think>" at the end, and the blanks before it (dropped if it closes).
                keep = partial_suffix(self._buf, THINK_CLOSE)
                body = self._buf[:len(self._buf) - keep]
                reasoning = body.rstrip()
                self._buf = self._buf[len(reasoning):]
                return reasoning, ""
            reasoning = self._buf[:end].rstrip()
            self._state, self._buf, self._strip = "content", self._buf[end + len(THINK_CLOSE):], True
        if self._state == "content":
            if self._strip:
                self._buf = self._buf.lstrip()
                self._strip = not self._buf
            content, self._buf = self._buf, ""
        return reasoning, content

    def finish(self) -> tuple[str, str]:
        """The end of the output: what is still held. Cut inside the block, it is reasoning; a
        start that never decided (blanks, "<thi") is content, or reasoning when `opened`."""
        rest, self._buf = self._buf, ""
        if self._state == "reasoning":
            return rest.rstrip(), ""  # held: blanks, maybe a partial "</think>" (text, since it never closed)
        if self._state == "start" and self.opened:
            return rest.strip(), ""
        return "", rest


def split_reasoning(text: str, *, opened: bool = False) -> tuple[str, str]:
    """(reasoning, content) of a whole output: the same splitter, in one piece."""
    stream = ReasoningStream(opened)
    (r1, c1), (r2, c2) = stream.push(text), stream.finish()
    return r1 + r2, c1 + c2


def partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker` (what a streaming
    parser holds back: the marker may be arriving). Tool-call parsing uses it too."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0
