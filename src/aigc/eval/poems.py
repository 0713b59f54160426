"""Classical Chinese poem checks: form (lines x characters), rhyme, diversity and copying.

Forms: 五言绝句 (4 lines x 5), 七言绝句 (4 x 7), 五言律诗 (8 x 5), 七言律诗 (8 x 7). A "line" is a
句, delimited by Chinese or Western punctuation or a newline. Rhyme uses pypinyin finals grouped
into the 13 modern rhyme classes (十三辙), so 光/乡 (uang/iang) or 云/人 (un/en) count as rhymes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pypinyin import Style, lazy_pinyin

# form name -> (lines, characters per line)
FORMS: dict[str, tuple[int, int]] = {
    "五言绝句": (4, 5),
    "七言绝句": (4, 7),
    "五言律诗": (8, 5),
    "七言律诗": (8, 7),
}

_LINE_SPLIT = re.compile(r"[，。？！；、,.?!;:：\s]+")
_HAN = re.compile(r"[\u3400-\u9fff]")

# 十三辙: final -> rhyme class. Non-strict and strict pypinyin spellings are both listed.
_RHYME_CLASSES = {
    "a": ("a", "ia", "ua"),
    "o": ("o", "e", "uo"),
    "ie": ("ie", "ve", "üe", "ue"),
    "i": ("i", "v", "ü", "er", "-i"),
    "u": ("u",),
    "ai": ("ai", "uai"),
    "ei": ("ei", "ui", "uei"),
    "ao": ("ao", "iao"),
    "ou": ("ou", "iu", "iou"),
    "an": ("an", "ian", "uan", "van", "üan"),
    "en": ("en", "in", "un", "uen", "vn", "ün"),
    "ang": ("ang", "iang", "uang"),
    "eng": ("eng", "ing", "ong", "iong", "ueng"),
}
_FINAL_TO_CLASS = {f: cls for cls, finals in _RHYME_CLASSES.items() for f in finals}


def split_lines(poem: str) -> list[str]:
    """The poem's 句, each reduced to its Han characters (titles/markup are the caller's job)."""
    lines = ["".join(_HAN.findall(part)) for part in _LINE_SPLIT.split(poem)]
    return [x for x in lines if x]


def form_of(poem: str) -> str | None:
    """The regulated form a poem has, or None."""
    lines = split_lines(poem)
    for name, (n_lines, n_chars) in FORMS.items():
        if len(lines) == n_lines and all(len(x) == n_chars for x in lines):
            return name
    return None


def has_form(poem: str, form: str) -> bool:
    n_lines, n_chars = FORMS[form]
    lines = split_lines(poem)
    return len(lines) == n_lines and all(len(x) == n_chars for x in lines)


def rhyme_class(char: str) -> str | None:
    final = lazy_pinyin(char, style=Style.FINALS, strict=False)[0]
    return _FINAL_TO_CLASS.get(final)


def even_lines_rhyme(poem: str) -> bool:
    """Do the even lines (2, 4, ...) end in characters of one rhyme class?"""
    lines = split_lines(poem)
    ends = [rhyme_class(line[-1]) for line in lines[1::2]]
    return len(ends) >= 2 and None not in ends and len(set(ends)) == 1


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Unique character n-grams / all n-grams over the texts (Han characters only)."""
    total, unique = 0, set()
    for t in texts:
        chars = "".join(_HAN.findall(t))
        grams = [chars[i : i + n] for i in range(len(chars) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


def copied_spans(samples: list[str], corpus: Iterable[str], min_len: int = 8) -> list[bool]:
    """For each sample: does it share a run of >= min_len Han characters with any corpus text?

    Scans the corpus once against the samples' n-grams, so memory stays small for a big corpus.
    """
    sample_chars = ["".join(_HAN.findall(s)) for s in samples]
    grams: dict[str, set[int]] = {}
    for i, chars in enumerate(sample_chars):
        for j in range(len(chars) - min_len + 1):
            grams.setdefault(chars[j : j + min_len], set()).add(i)
    copied = [False] * len(samples)
    if not grams:
        return copied
    for text in corpus:
        chars = "".join(_HAN.findall(text))
        for j in range(len(chars) - min_len + 1):
            hit = grams.get(chars[j : j + min_len])
            if hit:
                for i in hit:
                    copied[i] = True
    return copied


@dataclass
class FormReport:
    form: str
    samples: int
    correct_form: int
    rhymed: int  # quatrains and regulated verse alike: even lines rhyme

    @property
    def form_accuracy(self) -> float:
        return self.correct_form / self.samples if self.samples else 0.0

    @property
    def rhyme_rate(self) -> float:
        return self.rhymed / self.samples if self.samples else 0.0


def score_form(form: str, poems: list[str]) -> FormReport:
    ok = [p for p in poems if has_form(p, form)]
    return FormReport(form, len(poems), len(ok), sum(even_lines_rhyme(p) for p in ok))
