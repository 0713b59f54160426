"""Metrics for generated text against references: BLEU and chrF (sacrebleu), ROUGE-1/2/L and distinct-n.

Chinese has no spaces, so word-based metrics need their own tokenization: BLEU uses sacrebleu's `zh`
tokenizer (each CJK character is a token) when the references are Chinese, and ROUGE / distinct-n
split CJK text into characters and other text into lower-cased words (`text_tokens`). All scores are
percentages (0-100) except distinct-n (a ratio, 0-1).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

# CJK ideographs (+ extension A, compatibility), kana and Hangul: scripts written without spaces.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_CJK_CHAR = re.compile(rf"[{_CJK}]")


def text_tokens(text: str) -> list[str]:
    """CJK characters one by one, other words lower-cased; punctuation and spaces dropped."""
    return [t.lower() for t in _TOKEN.findall(text)]


def is_cjk(texts: Sequence[str], threshold: float = 0.3) -> bool:
    """Whether CJK characters make up at least `threshold` of the non-space characters."""
    chars = sum(len(t) - t.count(" ") for t in texts)
    return chars > 0 and sum(len(_CJK_CHAR.findall(t)) for t in texts) / chars >= threshold


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _f1(overlap: int, pred_total: int, ref_total: int) -> float:
    if overlap == 0:
        return 0.0
    p, r = overlap / pred_total, overlap / ref_total
    return 2 * p * r / (p + r)


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F1 over examples (x100), on `text_tokens`."""
    _check(predictions, references)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for pred, ref in zip(predictions, references, strict=True):
        p, r = text_tokens(pred), text_tokens(ref)
        for n in (1, 2):
            pc, rc = _ngrams(p, n), _ngrams(r, n)
            totals[f"rouge{n}"] += _f1(sum((pc & rc).values()), sum(pc.values()), sum(rc.values()))
        totals["rougeL"] += _f1(_lcs(p, r), len(p), len(r))
    return {k: 100 * v / len(predictions) for k, v in totals.items()}


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over all texts (diversity; 0 when there are no n-grams)."""
    grams: Counter = Counter()
    for t in texts:
        grams.update(_ngrams(text_tokens(t), n))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def bleu_chrf(predictions: Sequence[str], references: Sequence[str], lang: str | None = None) -> dict[str, float]:
    """Corpus BLEU and chrF with sacrebleu; `lang` "zh" (or auto-detected Chinese references) selects
    sacrebleu's Chinese tokenizer for BLEU, anything else its default "13a"."""
    import sacrebleu

    _check(predictions, references)
    zh = lang == "zh" or (lang is None and is_cjk(references))
    refs = [list(references)]
    bleu = sacrebleu.corpus_bleu(list(predictions), refs, tokenize="zh" if zh else "13a")
    chrf = sacrebleu.corpus_chrf(list(predictions), refs)
    return {"bleu": bleu.score, "chrf": chrf.score}


def generation_metrics(predictions: Sequence[str], references: Sequence[str], task: str,
                       lang: str | None = None) -> dict[str, float]:
    """translate: BLEU, chrF; summarize: ROUGE-1/2/L. Both add distinct-1/2 and the mean output length."""
    if task not in ("translate", "summarize"):
        raise ValueError(f"unknown task {task!r}; choose translate or summarize")
    scores = bleu_chrf(predictions, references, lang) if task == "translate" else rouge(predictions, references)
    scores["distinct_1"] = distinct_n(predictions, 1)
    scores["distinct_2"] = distinct_n(predictions, 2)
    scores["mean_length"] = sum(len(text_tokens(p)) for p in predictions) / len(predictions)
    return scores


def _check(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no examples to score")


# ---- producing the predictions ----------------------------------------------------------------

TASK_PROMPTS = {
    "translate": "Translate the following text into {language}. Reply with the translation only.\n\n{source}",
    "summarize": "Summarize the following text in one or two sentences.\n\n{source}",
}
FIELD_GUESSES = {
    "translate": (("source", "target"), ("src", "tgt"), ("en", "zh")),
    "summarize": (("text", "summary"), ("document", "summary"), ("source", "target")),
}


def build_prompt(tokenizer, task: str, source: str, *, language: str, template: str | None = None) -> list[int]:
    """Prompt ids: the task instruction as a user message in the model's chat template."""
    text = (template or TASK_PROMPTS[task]).format(source=source, language=language)
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                         tokenize=True)


def predict(model, tokenizer, prompts: list[list[int]], *, max_tokens: int = 128, batch_size: int = 16,
            eos_token_ids=None) -> list[str]:
    """Greedy completions of `prompts` (batched), stripped."""
    from aigc.engine.offline import generate
    from aigc.generation.params import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        completions = generate(model, batch, params, eos_token_ids=eos_token_ids, tokenizer=tokenizer)
        out += [c[0].text.rstrip("\ufffd").strip() for c in completions]  # a cut-off last character
    return out
