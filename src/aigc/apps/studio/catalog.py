"""Studio templates: typed form fields + a jinja2 prompt ("prompt learning": a template guides the model).

A template is metadata (id, version, names and descriptions in zh/en, fields with types, labels,
options and defaults, a preferred model, sampling params, an optional system prompt) plus a
jinja2 body that turns the form's values into the prompt. Built-in templates ship as
`templates/<id>.v<version>.yaml` + `.j2` in this package (the newest version of each id wins);
users' templates are the same thing stored in the database (library.py).

Bodies render in jinja2's immutable sandbox with StrictUndefined and resource limits (sandbox.py):
a user template cannot reach Python objects or exhaust the server, and a typo in a variable name
is an error, not an empty string. Users' templates render in a child process with a time limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from aigc.apps.studio import sandbox

BUILTIN_DIR = Path(__file__).parent / "templates"
FIELD_TYPES = ("text", "textarea", "select", "number")
MAX_BODY_CHARS = 20_000
MAX_FIELDS = 30
MAX_VALUE_CHARS = 8_000
MAX_PROMPT_CHARS = 60_000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
_ENV = sandbox.ENV


class TemplateSpecError(ValueError):
    """A template (file, JSON or form values) that is not valid; the message says where."""


def _i18n(value: Any, where: str, *, required: bool = True) -> dict[str, str]:
    """A text in both UI languages: {"zh": ..., "en": ...}; a plain string serves both."""
    if value is None or value == "":
        if required:
            raise TemplateSpecError(f"{where} is required")
        return {"zh": "", "en": ""}
    if isinstance(value, str):
        return {"zh": value, "en": value}
    if isinstance(value, dict) and set(value) <= {"zh", "en"} and all(isinstance(v, str) for v in value.values()):
        zh, en = value.get("zh") or value.get("en") or "", value.get("en") or value.get("zh") or ""
        if required and not (zh or en):
            raise TemplateSpecError(f"{where} is required")
        return {"zh": zh, "en": en}
    raise TemplateSpecError(f"{where} must be a string or {{'zh': str, 'en': str}}")


@dataclass
class TemplateField:
    name: str
    type: str = "text"
    label: dict[str, str] = field(default_factory=dict)
    options: list[dict[str, Any]] = field(default_factory=list)  # select: [{"value", "label": {zh, en}}]
    default: Any = ""
    required: bool = False
    placeholder: dict[str, str] = field(default_factory=dict)
    min: float | None = None  # number
    max: float | None = None

    @classmethod
    def parse(cls, data: Any, where: str) -> TemplateField:
        if not isinstance(data, dict):
            raise TemplateSpecError(f"{where} must be an object")
        name = data.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise TemplateSpecError(f"{where}.name must be an identifier (letters, digits, _), got {name!r}")
        kind = data.get("type", "text")
        if kind not in FIELD_TYPES:
            raise TemplateSpecError(f"{where}.type must be one of {', '.join(FIELD_TYPES)}, got {kind!r}")
        options = []
        for j, opt in enumerate(data.get("options") or []):
            if isinstance(opt, str | int | float):
                opt = {"value": str(opt)}
            if not isinstance(opt, dict) or not isinstance(opt.get("value"), str | int | float):
                raise TemplateSpecError(f"{where}.options[{j}] must be a string or {{'value', 'label'}}")
            value = str(opt["value"])
            options.append({"value": value, "label": _i18n(opt.get("label") or value, f"{where}.options[{j}].label")})
        if kind == "select" and not options:
            raise TemplateSpecError(f"{where}: a select field needs options")
        out = cls(name=name, type=kind, label=_i18n(data.get("label") or name, f"{where}.label"), options=options,
                  default=data.get("default", "" if kind != "select" else options[0]["value"]),
                  required=bool(data.get("required", False)),
                  placeholder=_i18n(data.get("placeholder"), f"{where}.placeholder", required=False))
        if kind == "number":
            for bound in ("min", "max"):
                if data.get(bound) is not None and not isinstance(data[bound], int | float):
                    raise TemplateSpecError(f"{where}.{bound} must be a number")
            out.min, out.max = data.get("min"), data.get("max")
        return out

    def clean(self, value: Any) -> Any:
        """The submitted value checked against the field's type (the default when missing)."""
        if value is None or value == "":
            value = self.default
        if self.type == "number":
            if value is None or value == "":
                if self.required:
                    raise TemplateSpecError(f"{self.name} is required")
                return None
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise TemplateSpecError(f"{self.name} must be a number") from None
            if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
                raise TemplateSpecError(f"{self.name} must be between {self.min} and {self.max}")
            return int(number) if number.is_integer() else number
        value = "" if value is None else str(value)
        if len(value) > MAX_VALUE_CHARS:
            raise TemplateSpecError(f"{self.name} is longer than {MAX_VALUE_CHARS} characters")
        if self.required and not value.strip():
            raise TemplateSpecError(f"{self.name} is required")
        if self.type == "select" and value not in {o["value"] for o in self.options}:
            raise TemplateSpecError(f"{self.name} must be one of: {', '.join(o['value'] for o in self.options)}")
        return value

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "label": self.label, "default": self.default,
                               "required": self.required}
        if self.options:
            out["options"] = self.options
        if any(self.placeholder.values()):
            out["placeholder"] = self.placeholder
        if self.type == "number":
            out["min"], out["max"] = self.min, self.max
        return out


@dataclass
class StudioTemplate:
    id: str
    version: int
    name: dict[str, str]
    body: str
    description: dict[str, str] = field(default_factory=dict)
    category: str = "writing"
    fields: list[TemplateField] = field(default_factory=list)
    model: str | None = None  # preferred model; the first served one when it is not served
    params: dict[str, Any] = field(default_factory=dict)
    system: str = ""
    builtin: bool = False
    output_schema: dict[str, Any] | None = None  # JSON output mode: the schema the output follows

    @classmethod
    def parse(cls, data: Any, *, ident: str | None = None, builtin: bool = False) -> StudioTemplate:
        """Validate a template (from a YAML file, the API or an import)."""
        if not isinstance(data, dict):
            raise TemplateSpecError("a template must be an object")
        body = data.get("body")
        if not isinstance(body, str) or not body.strip():
            raise TemplateSpecError("body (the jinja2 prompt) is required")
        if len(body) > MAX_BODY_CHARS:
            raise TemplateSpecError(f"body is longer than {MAX_BODY_CHARS} characters")
        raw_fields = data.get("fields") or []
        if not isinstance(raw_fields, list) or len(raw_fields) > MAX_FIELDS:
            raise TemplateSpecError(f"fields must be a list of at most {MAX_FIELDS} fields")
        fields = [TemplateField.parse(f, f"fields[{i}]") for i, f in enumerate(raw_fields)]
        if len({f.name for f in fields}) != len(fields):
            raise TemplateSpecError("field names must be unique")
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise TemplateSpecError("params must be an object")
        version = data.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise TemplateSpecError("version must be a positive integer")
        output_schema = data.get("output_schema")
        if output_schema is not None and not isinstance(output_schema, dict):
            raise TemplateSpecError("output_schema must be a JSON schema object")
        for key in ("model", "system", "category"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise TemplateSpecError(f"{key} must be a string")
        out = cls(id=ident or str(data.get("id") or ""), version=version, name=_i18n(data.get("name"), "name"),
                  body=body, description=_i18n(data.get("description"), "description", required=False),
                  category=data.get("category") or "writing", fields=fields, model=data.get("model") or None,
                  params=dict(params), system=data.get("system") or "", builtin=builtin,
                  output_schema=output_schema)
        out.compile()  # a syntax error is reported now, not at the first use
        return out

    def compile(self) -> jinja2.Template:
        try:
            return _ENV.from_string(self.body)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateSpecError(f"body: jinja2 syntax error at line {e.lineno}: {e.message}") from None

    def clean_values(self, values: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(values, dict):
            raise TemplateSpecError("values must be an object")
        return {f.name: f.clean(values.get(f.name)) for f in self.fields}

    def render(self, values: dict[str, Any]) -> str:
        """The prompt for these form values (defaults fill missing ones). Blocking: a user's
        template renders in the sandbox's child process, with its time limit."""
        cleaned = self.clean_values(values)
        try:
            text = (sandbox.render_here if self.builtin else sandbox.render)(self.body, cleaned)
        except sandbox.TemplateLimitError as e:
            raise TemplateSpecError(str(e)) from None
        text = text.strip()
        if len(text) > MAX_PROMPT_CHARS:
            raise TemplateSpecError(f"the rendered prompt is longer than {MAX_PROMPT_CHARS} characters")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "name": self.name, "description": self.description,
                "category": self.category, "fields": [f.to_dict() for f in self.fields], "model": self.model,
                "params": self.params, "system": self.system, "body": self.body, "builtin": self.builtin,
                "output_schema": self.output_schema}


# Built-in templates in the order the studio shows them (others follow by id).
FEATURED = ("poem", "story", "news", "ad_copy", "product_description", "summary", "translation", "email_reply",
            "quiz", "customer_service")
_FILE = re.compile(r"^(?P<id>[a-z0-9_-]+)\.v(?P<version>\d+)\.yaml$")


def load_builtin_templates(directory: Path = BUILTIN_DIR) -> dict[str, StudioTemplate]:
    """The newest version of every `<id>.v<n>.yaml` (+ its `.j2` body) in `directory`, by id."""
    found: dict[str, StudioTemplate] = {}
    for path in sorted(directory.glob("*.yaml")):
        m = _FILE.match(path.name)
        if m is None:
            raise TemplateSpecError(f"{path.name}: template files are named <id>.v<version>.yaml")
        ident, version = m["id"], int(m["version"])
        if ident in found and found[ident].version > version:
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise TemplateSpecError(f"{path.name}: expected a mapping")
        if data.get("id", ident) != ident or data.get("version", version) != version:
            raise TemplateSpecError(f"{path.name}: id/version inside differ from the file name")
        body = path.with_suffix(".j2").read_text(encoding="utf-8")
        try:
            found[ident] = StudioTemplate.parse({**data, "version": version, "body": body}, ident=ident, builtin=True)
        except TemplateSpecError as e:
            raise TemplateSpecError(f"{path.name}: {e}") from None
    rank = {ident: i for i, ident in enumerate(FEATURED)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def choose_model(template: StudioTemplate, served: list[str], preferred: dict[str, str] | None = None) -> str | None:
    """The template's model: a configured override, else its own preference, when served; else the
    first served model (so a template naming a model this server lacks still works)."""
    for name in ((preferred or {}).get(template.id), template.model):
        if name and name in served:
            return name
    return served[0] if served else None
