"""Chunks for retrieval that respect both languages: never across a heading, split at paragraphs,
then at sentences (。！？；… in Chinese, . ! ? in English), packed up to a token budget measured by
the embedding model's tokenizer, with an overlap of whole sentences. Every chunk keeps its heading
path and its character span in the document (what a citation highlights)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from aigc.knowledge.parsing import Parsed

# A sentence ends at Chinese end punctuation (with any closing quotes), or at . ! ? followed by
# whitespace; a line break inside a paragraph ends one too (lists, addresses).
_SENTENCE = re.compile(r"[^。！？；!?…\n]*?(?:[。！？；!?]+|…+|\.(?=\s)|\.$|$)[”’」』)）\"']*\s*|[^\n]*\n", re.S)
DEFAULT_BUDGET = 200  # tokens per chunk (the embedding model's, with its special tokens)
DEFAULT_OVERLAP = 40


@dataclass(frozen=True)
class Chunk:
    text: str
    heading: list[str]
    start: int  # character span in the document's text
    end: int

    @property
    def heading_text(self) -> str:
        return " > ".join(self.heading)


def sentences(text: str) -> list[tuple[int, int]]:
    """Spans of the sentences of `text` (whitespace around them excluded)."""
    spans = []
    for m in _SENTENCE.finditer(text):
        a, b = m.span()
        piece = text[a:b]
        if not piece.strip():
            continue
        a += len(piece) - len(piece.lstrip())
        b -= len(piece) - len(piece.rstrip())
        spans.append((a, b))
    return spans


def _split_long(start: int, end: int, text: str, count: Callable[[str], int], budget: int) -> list[tuple[int, int]]:
    """A sentence over the budget, cut into pieces that fit (at spaces where there are some)."""
    out = []
    while start < end:
        lo, hi = start + 1, end
        while lo < hi:  # the longest prefix that fits
            mid = (lo + hi + 1) // 2
            if count(text[start:mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        cut = lo
        space = text.rfind(" ", start + 1, cut)
        if cut < end and space > start + (cut - start) // 2:
            cut = space
        out.append((start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    return out


def chunk_document(doc: Parsed, count_tokens: Callable[[str], int], budget: int = DEFAULT_BUDGET,
                   overlap: int = DEFAULT_OVERLAP) -> list[Chunk]:
    if overlap >= budget:
        raise ValueError(f"the overlap ({overlap}) must be smaller than the budget ({budget})")
    text = doc.text
    chunks: list[Chunk] = []
    for section in doc.sections:
        spans: list[tuple[int, int]] = []
        for a, b in sentences(section.text):
            a, b = a + section.start, b + section.start
            if count_tokens(text[a:b]) > budget:
                spans += _split_long(a, b, text, count_tokens, budget)
            else:
                spans.append((a, b))
        i = 0
        while i < len(spans):
            j = i + 1
            while j < len(spans) and count_tokens(text[spans[i][0]:spans[j][1]]) <= budget:
                j += 1
            a, b = spans[i][0], spans[j - 1][1]
            chunks.append(Chunk(text[a:b], section.heading, a, b))
            if j >= len(spans):
                break
            # The next chunk starts with the last sentences of this one that fit in the overlap.
            k = j
            while k - 1 > i and count_tokens(text[spans[k - 1][0]:b]) <= overlap:
                k -= 1
            i = k if k < j else j
    return chunks
