"""Eval sets: prompts with checks (aigc/eval/checks.py), one YAML file each, run by `aigc eval run` and
the server.

YAML because prompts, references and judges' rubrics are multi-line text in two languages, and the
studio's templates are YAML already. The format (every key but `items` is optional):

    description: {zh: ..., en: ...}        # or one string
    template: poem                         # items are runs of this built-in studio template
    model: aigc-poet-zh                    # the default model (else the template's, else the bundled one)
    gate: 0.9                              # the pass rate `--gate` defaults to
    params: {temperature: 0.8, seed: 0}    # over the template's params (item i samples with seed + i)
    system: ...                            # plain sets: a system prompt for every item
    checks: [{poem_form: 七言绝句}]         # applied to every item, before the item's own
    items:
      - id: autumn                         # default: its position, 1-based
        values: {form: 七言绝句, theme: 秋夜思乡}   # template sets: the form's values
        prompt: ...                        # plain sets: the user's message
        output: json                       # template sets: the template's JSON output mode
        reference: ... | references: [...] # what bleu/chrf (and a judge) compare with
        params: {max_tokens: 64}
        checks: [{contains: 秋}, {chrf: 30}, {judge: {model: M, rubric: ...}}]

An item passes when all its checks pass; a run's pass rate is the share of items that passed. The
check kinds are in checks.py. Built-in sets (one per studio template) ship in `sets/` beside this
file and are named by their file's stem.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aigc.apps.chat.model import ParamsIn
from aigc.apps.studio.catalog import TemplateSpecError, load_builtin_templates
from aigc.eval.checks import Check, EvalSetError

BUILTIN_DIR = Path(__file__).parent / "sets"
_SET_KEYS = {"name", "description", "template", "model", "gate", "params", "system", "checks", "items"}
_ITEM_KEYS = {"id", "values", "prompt", "output", "reference", "references", "params", "checks"}
_PARAMS = {"temperature", "top_p", "max_tokens", "seed"}  # what a studio run or a chat reply takes
MAX_ITEMS = 2000


class UnknownEvalSetError(LookupError):
    """No built-in set of that name and no such file."""


@dataclass
class EvalItem:
    id: str
    checks: list[Check]
    prompt: str = ""  # plain sets
    values: dict[str, Any] = field(default_factory=dict)  # template sets
    output: str = "text"  # template sets: text | json
    references: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSet:
    name: str
    items: list[EvalItem]
    description: dict[str, str] = field(default_factory=dict)
    template: str | None = None
    model: str | None = None
    gate: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    system: str = ""
    digest: str = ""  # of the file's text: runs of different versions of a set are told apart

    @property
    def judge_models(self) -> list[str]:
        return sorted({c.value["model"] for item in self.items for c in item.checks if c.kind == "judge"})

    def check_names(self) -> list[str]:
        return list(dict.fromkeys(c.name for item in self.items for c in item.checks))

    def summary(self) -> dict[str, Any]:
        """What a list of sets shows."""
        return {"name": self.name, "description": self.description, "template": self.template,
                "model": self.model, "gate": self.gate, "items": len(self.items), "checks": self.check_names(),
                "judges": self.judge_models, "digest": self.digest}


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise EvalSetError(f"{where} must be a text")
    return value


def _params(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - _PARAMS:
        raise EvalSetError(f"{where} must be a mapping of {', '.join(sorted(_PARAMS))}")
    try:  # the bounds the app's API enforces, so a set cannot ask for what a run would refuse
        ParamsIn.model_validate(value)
    except ValidationError as e:
        first = e.errors()[0]
        raise EvalSetError(f"{where}.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return dict(value)


def _description(value: Any) -> dict[str, str]:
    if value is None:
        return {"zh": "", "en": ""}
    if isinstance(value, str):
        return {"zh": value, "en": value}
    if isinstance(value, dict) and set(value) <= {"zh", "en"} and all(isinstance(v, str) for v in value.values()):
        return {"zh": value.get("zh") or value.get("en", ""), "en": value.get("en") or value.get("zh", "")}
    raise EvalSetError("description must be a text or {zh: text, en: text}")


def _checks(value: Any, where: str, output_schema: dict[str, Any] | None) -> list[Check]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise EvalSetError(f"{where} must be a list")
    return [Check.parse(c, f"{where}[{i}]", output_schema=output_schema) for i, c in enumerate(value)]


def parse_eval_set(data: Any, *, name: str, digest: str = "") -> EvalSet:
    """Validate a set (the mapping a YAML file holds). Template sets are checked against the
    built-in template: its id, its fields' values, its JSON output mode."""
    if not isinstance(data, dict):
        raise EvalSetError("an eval set must be a mapping with `items`")
    unknown = set(data) - _SET_KEYS
    if unknown:
        raise EvalSetError(f"unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    template = data.get("template")
    spec = None
    if template is not None:
        builtin = load_builtin_templates()
        if template not in builtin:
            raise EvalSetError(f"template {template!r} is not a built-in studio template ({', '.join(builtin)})")
        spec = builtin[template]
    gate = data.get("gate")
    if gate is not None and (isinstance(gate, bool) or not isinstance(gate, int | float) or not 0 <= gate <= 1):
        raise EvalSetError("gate must be a pass rate between 0 and 1")
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise EvalSetError("model must name a model")
    system = _text(data.get("system") or "", "system")
    if system and spec is not None:
        raise EvalSetError("system: a template set uses its template's system prompt")
    common = _checks(data.get("checks"), "checks", spec.output_schema if spec else None)
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise EvalSetError("items must be a non-empty list")
    if len(raw_items) > MAX_ITEMS:
        raise EvalSetError(f"a set holds at most {MAX_ITEMS} items")
    items: list[EvalItem] = []
    for i, raw in enumerate(raw_items):
        where = f"items[{i}]"
        if not isinstance(raw, dict):
            raise EvalSetError(f"{where} must be a mapping")
        unknown = set(raw) - _ITEM_KEYS
        if unknown:
            raise EvalSetError(f"{where}: unknown key(s): {', '.join(sorted(map(str, unknown)))}")
        ident = str(raw.get("id", i + 1))
        if any(it.id == ident for it in items):
            raise EvalSetError(f"{where}: id {ident!r} is used twice")
        refs = raw.get("references", [raw["reference"]] if "reference" in raw else [])
        if not isinstance(refs, list) or not all(isinstance(r, str) and r.strip() for r in refs):
            raise EvalSetError(f"{where}: references must be texts")
        item = EvalItem(id=ident, checks=common + _checks(raw.get("checks"), f"{where}.checks",
                                                          spec.output_schema if spec else None),
                        references=list(refs), params=_params(raw.get("params"), f"{where}.params"))
        if not item.checks:
            raise EvalSetError(f"{where} has no checks (give it some, or the set)")
        if any(c.needs_reference for c in item.checks) and not item.references:
            raise EvalSetError(f"{where}: bleu/chrf need a reference")
        if spec is not None:
            if "prompt" in raw:
                raise EvalSetError(f"{where}: a template set's items give `values`, not a `prompt`")
            values = raw.get("values") or {}
            output = raw.get("output", "text")
            if output not in ("text", "json"):
                raise EvalSetError(f"{where}.output must be text or json")
            if output == "json" and spec.output_schema is None:
                raise EvalSetError(f"{where}: template {spec.id!r} has no JSON output mode")
            try:
                spec.clean_values(values)  # a value the form would refuse is the set's mistake
            except TemplateSpecError as e:
                raise EvalSetError(f"{where}.values: {e}") from None
            item.values, item.output = dict(values), output
        else:
            if "values" in raw or "output" in raw:
                raise EvalSetError(f"{where}: values/output need a `template`")
            prompt = raw.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                raise EvalSetError(f"{where}.prompt is required")
            item.prompt = prompt
        items.append(item)
    name = data.get("name", name)
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise EvalSetError("name must be a short text")
    return EvalSet(name=name.strip(), items=items, description=_description(data.get("description")),
                   template=template, model=model.strip() if model else None,
                   gate=float(gate) if gate is not None else None, params=_params(data.get("params"), "params"),
                   system=system, digest=digest)


def read_eval_set(path: str | Path) -> EvalSet:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise EvalSetError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    try:
        return parse_eval_set(data, name=path.stem, digest=hashlib.sha256(text.encode()).hexdigest()[:12])
    except EvalSetError as e:
        raise EvalSetError(f"{path.name}: {e}") from None


def builtin_set_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_eval_set(name_or_path: str | Path) -> EvalSet:
    """A built-in set by name (`poem`), else a YAML file by path."""
    builtin = BUILTIN_DIR / f"{name_or_path}.yaml"
    if isinstance(name_or_path, str) and "/" not in name_or_path and builtin.is_file():
        return read_eval_set(builtin)
    path = Path(name_or_path)
    if path.is_file():
        return read_eval_set(path)
    raise UnknownEvalSetError(f"no eval set {str(name_or_path)!r}: not a built-in set "
                              f"({', '.join(builtin_set_names())}) and not a file")


def builtin_sets() -> list[EvalSet]:
    return [read_eval_set(BUILTIN_DIR / f"{n}.yaml") for n in builtin_set_names()]
