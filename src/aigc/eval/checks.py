"""The checks of an eval set (sets.py): each takes one model output and says pass or fail, with a
score where it has one and a short reason when it fails.

Kinds: `exact`, `contains`, `regex`, `json_schema`, `poem_form` (eval/poems.py's form checker, with
an optional rhyme requirement), `bleu` / `chrf` (sacrebleu, per item, against the item's references)
and `judge` (another model grades the output against a rubric; the runner asks it, this module
writes its prompt and reads its verdict). Any check can be inverted with `negate: true`, and
`required: false` makes it a measure that is reported but does not decide whether its item passes
(rhyme for a small poetry model, a judge's opinion of a small model's prose).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aigc.eval.generation_metrics import is_cjk
from aigc.eval.poems import FORMS, even_lines_rhyme, has_form

KINDS = ("exact", "contains", "regex", "json_schema", "poem_form", "bleu", "chrf", "judge")
_COMMON = {"name", "negate", "required"}
_OPTIONS: dict[str, set[str]] = {
    "exact": {"ignore_case"},
    "contains": {"ignore_case", "any"},
    "regex": {"ignore_case"},
    "json_schema": set(),
    "poem_form": {"rhyme"},
    "bleu": set(),
    "chrf": set(),
    "judge": set(),
}
_JUDGE_KEYS = {"model", "rubric", "min_score", "max_tokens"}


class EvalSetError(ValueError):
    """An eval set (file or check) that is not valid; the message says where."""


@dataclass
class CheckResult:
    name: str
    passed: bool
    score: float | None = None  # bleu/chrf (0-100), a judge's score
    detail: str = ""  # why it failed (or what the judge said)
    required: bool = True  # False: reported, but the item's pass does not depend on it

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "score": self.score, "detail": self.detail,
                "required": self.required}


@dataclass
class Check:
    """One check of an item. `value` is the kind's argument: the text, the pattern, the schema, the
    form, the minimum score, or the judge's settings."""

    kind: str
    value: Any
    name: str
    negate: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    required: bool = True

    @classmethod
    def parse(cls, data: Any, where: str, *, output_schema: dict[str, Any] | None = None) -> Check:
        """`{contains: [a, b], ignore_case: true}`: exactly one kind key, plus its options.
        `output_schema` is what `json_schema: template` stands for (a template set's schema)."""
        if not isinstance(data, dict):
            raise EvalSetError(f"{where} must be a mapping such as {{contains: text}}")
        kinds = [k for k in data if k in KINDS]
        if len(kinds) != 1:
            raise EvalSetError(f"{where} needs exactly one of: {', '.join(KINDS)}")
        kind = kinds[0]
        unknown = set(data) - {kind} - _COMMON - _OPTIONS[kind]
        if unknown:
            raise EvalSetError(f"{where}: unknown option(s) for {kind}: {', '.join(sorted(map(str, unknown)))}")
        name = data.get("name", kind)
        if not isinstance(name, str) or not name.strip() or len(name) > 60:
            raise EvalSetError(f"{where}.name must be a short text")
        for flag in ("negate", "required", "ignore_case", "any", "rhyme"):
            if flag in data and not isinstance(data[flag], bool):
                raise EvalSetError(f"{where}.{flag} must be true or false")
        options = {k: data[k] for k in _OPTIONS[kind] if k in data}
        value = _parse_value(kind, data[kind], f"{where}.{kind}", output_schema, options)
        return cls(kind, value, name.strip(), bool(data.get("negate", False)), options,
                   bool(data.get("required", True)))

    @property
    def needs_reference(self) -> bool:
        return self.kind in ("bleu", "chrf")

    def run(self, output: str, references: list[str]) -> CheckResult:
        """Score one output (not `judge`: the runner asks the judge, then calls `judge_result`)."""
        passed, score, detail = _RUNNERS[self.kind](self, output, references)
        return self._result(passed, score, detail)

    def _result(self, passed: bool, score: float | None, detail: str) -> CheckResult:
        if self.negate:
            passed, detail = not passed, "" if not passed else f"should not have matched ({self.kind})"
        # A judge's words are kept either way: they are the only record of why it decided.
        return CheckResult(self.name, passed, score, "" if passed and self.kind != "judge" else detail,
                           self.required)

    def failed(self, detail: str) -> CheckResult:
        """This check, not run (no output to run it on, or no judge)."""
        return CheckResult(self.name, False, None, detail, self.required)

    # ---- the judge ------------------------------------------------------------------------------

    def judge_messages(self, prompt: str, output: str, references: list[str]) -> list[dict[str, str]]:
        """What the judge model is asked: the rubric, the request, the reference if any, the answer."""
        rubric = self.value["rubric"]
        scored = self.value.get("min_score") is not None
        zh = is_cjk([rubric])
        ref = references[0] if references else None
        if zh:
            parts = [f"你在评判一个AI助手的回答。评分标准：\n{rubric}", f"用户的请求：\n{prompt}"]
            if ref is not None:
                parts.append(f"参考答案：\n{ref}")
            parts.append(f"待评判的回答：\n{output}")
            parts.append('只用JSON回答：{"reason": "<一句理由>", "score": <1到10的整数>}' if scored else
                         '只用JSON回答：{"reason": "<一句理由>", "verdict": "pass" 或 "fail"}')
        else:
            parts = [f"You are grading an AI assistant's answer. The rubric:\n{rubric}", f"The request:\n{prompt}"]
            if ref is not None:
                parts.append(f"A reference answer:\n{ref}")
            parts.append(f"The answer to grade:\n{output}")
            parts.append('Answer with JSON only: {"reason": "<why, in one sentence>", "score": <an integer from 1 to 10>}'
                         if scored else
                         'Answer with JSON only: {"reason": "<why, in one sentence>", "verdict": "pass" or "fail"}')
        return [{"role": "user", "content": "\n\n".join(parts)}]

    def judge_schema(self) -> dict[str, Any]:
        """Decoded under this where the judge model supports structured outputs, so its answer parses;
        the reason comes first, so the verdict follows from it."""
        if self.value.get("min_score") is not None:
            last: dict[str, Any] = {"score": {"type": "integer", "minimum": 1, "maximum": 10}}
        else:
            last = {"verdict": {"type": "string", "enum": ["pass", "fail"]}}
        return {"type": "object", "properties": {"reason": {"type": "string", "maxLength": 300}, **last},
                "required": ["reason", *last], "additionalProperties": False}

    def judge_result(self, reply: str) -> CheckResult:
        """The judge's reply read as a verdict (see `parse_verdict`); unreadable is a failure."""
        min_score = self.value.get("min_score")
        passed, score = parse_verdict(reply, min_score=min_score)
        said = " ".join(reply.split())[:300]
        if passed is None:
            return self._result(False, None, f"the judge's verdict could not be read: {said!r}")
        return self._result(passed, score, said)


def _parse_value(kind: str, value: Any, where: str, output_schema: dict[str, Any] | None,
                 options: dict[str, Any]) -> Any:
    if kind == "exact":
        if not isinstance(value, str):
            raise EvalSetError(f"{where} must be a text")
        return value
    if kind == "contains":
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise EvalSetError(f"{where} must be a text or a list of texts")
        return texts
    if kind == "regex":
        if not isinstance(value, str):
            raise EvalSetError(f"{where} must be a regular expression")
        try:
            return re.compile(value, re.IGNORECASE if options.get("ignore_case") else 0)
        except re.error as e:
            raise EvalSetError(f"{where}: not a valid regular expression: {e}") from None
    if kind == "json_schema":
        from jsonschema import Draft202012Validator, SchemaError

        if value == "template":
            if output_schema is None:
                raise EvalSetError(f"{where}: 'template' needs a set whose template declares an output_schema")
            value = output_schema
        if not isinstance(value, dict):
            raise EvalSetError(f"{where} must be a JSON schema (a mapping) or 'template'")
        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as e:
            raise EvalSetError(f"{where}: not a valid JSON schema: {e.message}") from None
        return value
    if kind == "poem_form":
        if value not in FORMS:
            raise EvalSetError(f"{where} must be one of {', '.join(FORMS)}")
        return value
    if kind in ("bleu", "chrf"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise EvalSetError(f"{where} must be the lowest passing score, 0 to 100")
        return float(value)
    # judge
    if not isinstance(value, dict) or not isinstance(value.get("rubric"), str) or not value["rubric"].strip():
        raise EvalSetError(f"{where} needs a rubric: {{model: NAME, rubric: text}}")
    unknown = set(value) - _JUDGE_KEYS
    if unknown:
        raise EvalSetError(f"{where}: unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    if not isinstance(value.get("model"), str) or not value["model"].strip():
        raise EvalSetError(f"{where}.model must name the judge model")
    min_score = value.get("min_score")
    if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, int | float)
                                  or not 1 <= min_score <= 10):
        raise EvalSetError(f"{where}.min_score must be between 1 and 10")
    max_tokens = value.get("max_tokens", 200)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 16 <= max_tokens <= 2048:
        raise EvalSetError(f"{where}.max_tokens must be an integer from 16 to 2048")
    return {"model": value["model"].strip(), "rubric": value["rubric"], "min_score": min_score,
            "max_tokens": max_tokens}


# ---- the checks themselves -------------------------------------------------------------------------


def _fold(text: str, check: Check) -> str:
    return text.casefold() if check.options.get("ignore_case") else text


def _exact(check: Check, output: str, refs: list[str]) -> tuple[bool, float | None, str]:
    ok = _fold(output.strip(), check) == _fold(check.value.strip(), check)
    return ok, None, f"expected exactly {check.value.strip()[:80]!r}"


def _contains(check: Check, output: str, refs: list[str]) -> tuple[bool, float | None, str]:
    text = _fold(output, check)
    found = [t for t in check.value if _fold(t, check) in text]
    if check.options.get("any"):
        return bool(found), None, f"none of {check.value} found"
    missing = [t for t in check.value if t not in found]
    return not missing, None, f"missing {missing}"


def _regex(check: Check, output: str, refs: list[str]) -> tuple[bool, float | None, str]:
    return check.value.search(output) is not None, None, f"no match for /{check.value.pattern[:80]}/"


def output_json(output: str) -> Any:
    """The output as JSON: all of it, else the first fenced ```json block (models like to fence)."""
    text = output.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    m = re.search(r"```(?:json)?\s*\n(.*?)```", text, re.DOTALL)
    if m is None:
        raise ValueError("the output is not JSON")
    try:
        return json.loads(m.group(1))
    except json.JSONDecodeError as e:
        raise ValueError(f"the fenced block is not JSON: {e.msg}") from None


def _json_schema(check: Check, output: str, refs: list[str]) -> tuple[bool, float | None, str]:
    from jsonschema import Draft202012Validator

    try:
        doc = output_json(output)
    except ValueError as e:
        return False, None, str(e)
    errors = sorted(Draft202012Validator(check.value).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "(root)"
        return False, None, f"{where}: {errors[0].message[:200]}"
    return True, None, ""


def _poem_form(check: Check, output: str, refs: list[str]) -> tuple[bool, float | None, str]:
    if not has_form(output, check.value):
        return False, None, f"not a {check.value}"
    if check.options.get("rhyme") and not even_lines_rhyme(output):
        return False, None, "the even lines do not rhyme"
    return True, None, ""


def _sacrebleu(check: Check, output: str, refs: list[str]) -> tuple[bool, float | None, str]:
    import sacrebleu

    if check.kind == "bleu":
        score = sacrebleu.sentence_bleu(output, refs, tokenize="zh" if is_cjk(refs) else "13a").score
    else:
        score = sacrebleu.sentence_chrf(output, refs).score
    score = round(score, 2)
    return score >= check.value, score, f"{check.kind} {score:.1f} < {check.value:g}"


def _not_here(check: Check, output: str, refs: list[str]) -> tuple[bool, float | None, str]:
    raise TypeError("a judge check is run by the eval runner (it needs the judge model)")


_RUNNERS = {"exact": _exact, "contains": _contains, "regex": _regex, "json_schema": _json_schema,
            "poem_form": _poem_form, "bleu": _sacrebleu, "chrf": _sacrebleu, "judge": _not_here}


# ---- reading a judge's verdict --------------------------------------------------------------------

_PASS_WORDS = {"pass", "passed", "passes", "yes", "true", "通过", "合格", "是"}
_FAIL_WORDS = {"fail", "failed", "fails", "no", "false", "不通过", "未通过", "不合格", "否"}
_LABEL = re.compile(r"(?:verdict|result|decision|判定|结论|结果|评判)\s*[:：=]?\s*\**\s*"
                    r"(pass(?:ed|es)?|fail(?:ed|s)?|不通过|未通过|通过|不合格|合格)", re.IGNORECASE)
_SCORE = re.compile(r"(?:score|rating|评分|得分|分数)\s*[:：=]?\s*\**\s*(\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?",
                    re.IGNORECASE)
_FRACTION = re.compile(r"\b(\d+(?:\.\d+)?)\s*/\s*10\b")
# Longest first, so 不通过 is not read as 通过.
_BARE = re.compile(r"不通过|未通过|不合格|通过|合格|\b(?:pass(?:ed|es)?|fail(?:ed|s)?)\b", re.IGNORECASE)


def _word_verdict(word: Any) -> bool | None:
    if isinstance(word, bool):
        return word
    if not isinstance(word, str):
        return None
    w = word.strip().strip("*.!。！").casefold()
    if w in _PASS_WORDS or w.startswith("pass"):
        return True
    if w in _FAIL_WORDS or w.startswith("fail"):
        return False
    return None


def _json_verdict(text: str) -> tuple[bool | None, float | None]:
    for m in re.finditer(r"\{[^{}]*\}", text):
        try:
            doc = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        if not isinstance(doc, dict):
            continue
        verdict = next((_word_verdict(doc[k]) for k in ("verdict", "pass", "passed", "result", "decision")
                        if k in doc and _word_verdict(doc[k]) is not None), None)
        score = doc.get("score", doc.get("rating"))
        if isinstance(score, str):
            try:
                score = float(score.split("/")[0])
            except ValueError:
                score = None
        score = float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None
        if verdict is not None or score is not None:
            return verdict, score
    return None, None


def parse_verdict(text: str, *, min_score: float | None = None) -> tuple[bool | None, float | None]:
    """(passed, score) from a judge's reply, or (None, None) when it cannot be read. Tried in order:
    a JSON object (`verdict`/`pass`/`result`, `score`/`rating`), a labelled verdict ("Verdict: PASS",
    "结论：通过"), a labelled score ("Score: 7/10", "评分：8", or a bare "7/10"), and last a bare
    PASS/FAIL/通过/不通过 (the last one said wins: models reason first, conclude last). With
    `min_score` a score decides (score >= min_score) when there is one; "N/100" or "N/5" is mapped
    onto the 1-10 scale the judge is asked for."""
    verdict, score = _json_verdict(text)
    if verdict is None:
        labelled = _LABEL.findall(text)
        if labelled:
            verdict = _word_verdict(labelled[-1])
    if score is None:
        m = _SCORE.search(text)
        if m is not None:
            score = float(m.group(1))
            if m.group(2) and float(m.group(2)) not in (0, 10):
                score = score * 10 / float(m.group(2))
        elif (f := _FRACTION.search(text)) is not None:
            score = float(f.group(1))
    if verdict is None and score is None:
        bare = _BARE.findall(text)
        if bare:
            verdict = _word_verdict(bare[-1])
    if min_score is not None and score is not None:
        return score >= min_score, score
    if verdict is not None:
        return verdict, score
    return None, score
