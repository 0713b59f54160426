"""All the studio's templates: the built-in ones (package files, read-only) and users' (database).

Users' templates have ids `user-<n>`; saving one again bumps its version. Export/import use
`{"format": "aigc.templates", "version": 1, "templates": [...]}`; an import always creates new
user templates (a built-in one imported becomes a user copy).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from aigc.apps.chat.conversations import NotFoundError
from aigc.apps.studio.catalog import StudioTemplate, TemplateSpecError, load_builtin_templates
from aigc.store import Database, UserTemplate
from aigc.store.models import utcnow

FORMAT = "aigc.templates"
USER_PREFIX = "user-"
MAX_IMPORT = 200


class ReadOnlyTemplateError(PermissionError):
    """Built-in templates cannot be changed or deleted (copy one instead)."""


def _user_id(ident: str) -> int | None:
    if not ident.startswith(USER_PREFIX):
        return None
    digits = ident[len(USER_PREFIX):]
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:  # a database integer, or nothing
        return None
    return int(digits)


class TemplateLibrary:
    """The built-in templates and one owner's own (`owner` as in ConversationStore): another
    owner's template is "not found"."""

    def __init__(self, db: Database, builtin: dict[str, StudioTemplate] | None = None, owner: int | None = None):
        self.db = db
        self.builtin = load_builtin_templates() if builtin is None else builtin
        self.owner = owner

    def scoped(self, owner: int | None) -> TemplateLibrary:
        return TemplateLibrary(self.db, self.builtin, owner)

    def _mine(self) -> Any:
        return UserTemplate.user_id.is_(None) if self.owner is None else UserTemplate.user_id == self.owner

    def _row(self, s: Any, row_id: int | None) -> UserTemplate | None:
        row = s.get(UserTemplate, row_id) if row_id is not None else None
        return row if row is not None and row.user_id == self.owner else None

    def _from_row(self, row: UserTemplate) -> StudioTemplate:
        return StudioTemplate.parse({**row.spec, "version": row.version, "body": row.body},
                                    ident=f"{USER_PREFIX}{row.id}")

    def list(self) -> list[StudioTemplate]:
        with self.db.session() as s:
            rows = list(s.scalars(select(UserTemplate).where(self._mine()).order_by(UserTemplate.id)))
            return list(self.builtin.values()) + [self._from_row(r) for r in rows]

    def get(self, ident: str) -> StudioTemplate:
        if ident in self.builtin:
            return self.builtin[ident]
        row_id = _user_id(ident)
        with self.db.session() as s:
            row = self._row(s, row_id)
            if row is None:
                raise NotFoundError("template", ident)
            return self._from_row(row)

    @staticmethod
    def _spec(t: StudioTemplate) -> dict[str, Any]:
        spec = t.to_dict()
        for key in ("id", "version", "body", "builtin"):
            spec.pop(key)
        return spec

    def create(self, data: Any) -> StudioTemplate:
        t = StudioTemplate.parse(data, ident="new")
        with self.db.session() as s:
            row = UserTemplate(version=1, spec=self._spec(t), body=t.body, user_id=self.owner)
            s.add(row)
            s.flush()
            return self._from_row(row)

    def update(self, ident: str, data: Any) -> StudioTemplate:
        if ident in self.builtin:
            raise ReadOnlyTemplateError(f"template {ident} is built in; copy it to change it")
        t = StudioTemplate.parse(data, ident=ident)
        row_id = _user_id(ident)
        with self.db.session() as s:
            row = self._row(s, row_id)
            if row is None:
                raise NotFoundError("template", ident)
            row.spec, row.body, row.version, row.updated_at = self._spec(t), t.body, row.version + 1, utcnow()
            s.flush()
            return self._from_row(row)

    def delete(self, ident: str) -> None:
        if ident in self.builtin:
            raise ReadOnlyTemplateError(f"template {ident} is built in and cannot be deleted")
        row_id = _user_id(ident)
        with self.db.session() as s:
            row = self._row(s, row_id)
            if row is None:
                raise NotFoundError("template", ident)
            s.delete(row)

    def export(self, ids: list[str] | None = None) -> dict[str, Any]:
        """The user templates (or the named ones, built-in included) as one JSON document."""
        chosen = [self.get(i) for i in ids] if ids else [t for t in self.list() if not t.builtin]
        return {"format": FORMAT, "version": 1, "templates": [t.to_dict() for t in chosen]}

    def import_(self, data: Any) -> list[StudioTemplate]:
        """Create user templates from an export (or a list of templates, or one); all or nothing."""
        if isinstance(data, dict) and "templates" in data:
            if data.get("format", FORMAT) != FORMAT:
                raise TemplateSpecError(f"format must be {FORMAT!r}")
            items = data["templates"]
        elif isinstance(data, dict):
            items = [data]
        else:
            items = data
        if not isinstance(items, list) or not items:
            raise TemplateSpecError("nothing to import: expected templates")
        if len(items) > MAX_IMPORT:
            raise TemplateSpecError(f"at most {MAX_IMPORT} templates per import")
        parsed = []
        for i, item in enumerate(items):
            try:
                parsed.append(StudioTemplate.parse(item, ident="new"))
            except TemplateSpecError as e:
                raise TemplateSpecError(f"templates[{i}]: {e}") from None
        with self.db.session() as s:
            rows = [UserTemplate(version=1, spec=self._spec(t), body=t.body, user_id=self.owner) for t in parsed]
            s.add_all(rows)
            s.flush()
            return [self._from_row(r) for r in rows]
