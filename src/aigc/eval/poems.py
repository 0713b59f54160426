"""Classical Chinese poem checks: form (lines x characters), rhyme, diversity and copying.

Forms: 五言绝句 (4 lines x 5), 七言绝句 (4 x 7), 五言律诗 (8 x 5), 七言律诗 (8 x 7). A "line" is a
句, delimited by Chinese or Western punctuation or a newline. Rhyme uses pypinyin finals grouped
into the 13 modern rhyme classes (十三辙), so 光/乡 (uang/iang) or 云/人 (un/en) count as rhymes.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

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


# ---- evaluating a poetry model ---------------------------------------------------------------

PROMPT = "写一首{form}，题目：{title}"


def generate_poems(loaded, titles: dict[str, list[str]], *, temperature: float = 0.8, seed: int = 0,
                   max_tokens: int = 160, batch_size: int = 50) -> dict[str, list[str]]:
    """Sample one poem per (form, title) through the model's chat template."""
    from aigc.engine.offline import generate
    from aigc.generation.params import SamplingParams

    tok = loaded.tokenizer
    out: dict[str, list[str]] = {}
    for form, form_titles in titles.items():
        prompts = [tok.apply_chat_template([{"role": "user", "content": PROMPT.format(form=form, title=t)}],
                                           add_generation_prompt=True, tokenize=True) for t in form_titles]
        texts: list[str] = []
        for i in range(0, len(prompts), batch_size):
            params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed + i)
            done = generate(loaded.model, prompts[i : i + batch_size], params, tokenizer=tok,
                            eos_token_ids=loaded.eos_token_ids)
            texts += [c[0].text.strip() for c in done]
        out[form] = texts
    return out


def poem_quality(samples: dict[str, list[str]], train_texts: Iterable[str]) -> dict:
    """Form accuracy and rhyme per form, distinct-2 and the copy check over all samples."""
    from aigc.eval.generation_metrics import distinct_n

    report: dict = {"forms": {}}
    everything: list[str] = []
    for form, poems in samples.items():
        r = score_form(form, poems)
        entry = {"samples": r.samples, "form_accuracy": round(r.form_accuracy, 4),
                 "even_lines_rhyme": round(r.rhyme_rate, 4)}
        report["forms"][form] = entry
        everything += poems
    copied = copied_spans(everything, train_texts, min_len=8)
    report["distinct_2"] = round(distinct_n(everything, 2), 4)
    report["not_copied_share"] = round(1 - sum(copied) / len(copied), 4) if copied else 1.0
    report["samples_total"] = len(everything)
    return report


def eval_titles(heldout: str | Path, count: int, seed: int = 0) -> dict[str, list[str]]:
    """`count` distinct prompt titles per form, taken from held-out poems (never trained on)."""
    titles: list[str] = []
    by_form: dict[str, list[str]] = {f: [] for f in FORMS}
    with open(heldout, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            t = r["title"]
            if not (0 < len(t) <= 8 and all("\u3400" <= ch <= "\u9fff" for ch in t)):
                continue
            titles.append(t)
            if r.get("shape") in by_form:
                by_form[r["shape"]].append(t)
    rng = random.Random(seed)
    pool = list(dict.fromkeys(titles))
    out = {}
    for form, own in by_form.items():
        chosen = list(dict.fromkeys(own))[:count]
        rest = [t for t in pool if t not in chosen]
        rng.shuffle(rest)
        out[form] = (chosen + rest)[:count]
    return out


def evaluate_poet(model: str | Path, corpus_dir: str | Path, *, samples: int = 100, temperature: float = 0.8,
                  seed: int = 0, models_dir: Path | None = None) -> dict:
    """The poetry model's report card: forms, rhyme, diversity, copying, held-out loss / bits per char.

    `corpus_dir` holds `poems_heldout.jsonl` (prompt titles and the held-out text) and
    `poems_train.jsonl` (what the copy check compares against), as written by the poet recipe.
    """
    from aigc.eval.perplexity import evaluate_perplexity, load_eval_tokens
    from aigc.models.loader import load_model

    corpus_dir = Path(corpus_dir)
    heldout, train = corpus_dir / "poems_heldout.jsonl", corpus_dir / "poems_train.jsonl"
    for f in (heldout, train):
        if not f.exists():
            raise FileNotFoundError(f"{f} not found; pass --data ../shared/data to build the corpus "
                                    "(or run: aigc train recipe poet-zh --data ../shared/data --steps corpus)")
    loaded = load_model(str(model), models_dir=models_dir)
    titles = eval_titles(heldout, samples, seed)
    poems = generate_poems(loaded, titles, temperature=temperature, seed=seed)

    def train_texts():
        with open(train, encoding="utf-8") as f:
            for line in f:
                yield "\n".join(json.loads(line)["paragraphs"])

    report = poem_quality(poems, train_texts())
    ppl = evaluate_perplexity(loaded.model, load_eval_tokens(heldout, loaded.tokenizer, fmt="poems"))
    report["heldout"] = {k: v for k, v in asdict(ppl).items() if isinstance(v, int | float)}
    report["settings"] = {"samples_per_form": samples, "temperature": temperature, "seed": seed,
                          "prompt": PROMPT}
    report["examples"] = {form: [{"title": t, "poem": p} for t, p in zip(titles[form][:3], poems[form][:3],
                                                                         strict=True)]
                          for form in poems}
    return report
