"""Support sites: a shop's customer-service assistant -- persona, rules, knowledge bases, model --
and what lets its widget talk to this server: a public key (it sits in the shop's page, so it is
no secret) and the origins whose pages may use it (the browser's CORS check, and ours).

The assistant's system prompt is built from the persona and rules at every turn, so an edit
applies to conversations already open.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from aigc.apps.chat.conversations import NotFoundError, iso
from aigc.store import Conversation, Database
from aigc.store.models import SupportSite, utcnow

KEY_PREFIX = "site_"
MAX_ORIGINS = 20
LANGUAGES = ("auto", "zh", "en")

DEFAULT_PERSONA = {
    "zh": "你是本店的在线客服助手，语气亲切、简洁、专业。",
    "en": "You are this shop's customer-service assistant: friendly, brief and precise.",
}
BASE_RULES = {
    "zh": "只根据资料回答；资料里没有的，就说没有找到，并提出可以转人工客服。不要承诺资料里没有写明的退款、赔偿、折扣或发货时间。",
    "en": "Answer only from the sources; when they do not say, say so and offer to pass the customer to a person. "
          "Never promise refunds, compensation, discounts or delivery dates the sources do not state.",
}
DEFAULT_GREETING = {
    "zh": "您好！我是在线客服助手，有什么可以帮您？需要人工服务请说“转人工”。",
    "en": "Hi! I'm the shop's assistant. How can I help? Say \"talk to a person\" any time to reach our team.",
}


class SupportError(ValueError):
    """A site setting that cannot be used (the API answers 400 with `param`)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def normalize_origin(text: str) -> str:
    """'https://Shop.example/' -> 'https://shop.example': what a browser sends as Origin."""
    raw = text.strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SupportError(f"origin {raw!r} is not a web origin like https://shop.example", "origins")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise SupportError(f"origin {raw!r} must be scheme://host[:port] only, without a path", "origins")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        raise SupportError(f"origin {raw!r} has an invalid port", "origins") from None
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def normalize_origins(values: list[str]) -> list[str]:
    if len(values) > MAX_ORIGINS:
        raise SupportError(f"at most {MAX_ORIGINS} origins per site", "origins")
    out: list[str] = []
    for value in values:
        origin = normalize_origin(value)
        if origin not in out:
            out.append(origin)
    return out


def system_prompt(site: dict[str, Any], language: str) -> str:
    """Persona, then the site's rules, then the rules every support assistant keeps."""
    lang = "zh" if language == "zh" else "en"
    persona = site["persona"].strip() or DEFAULT_PERSONA[lang]
    rules = [line.strip() for line in site["rules"].splitlines() if line.strip()]
    heading = "规则：" if lang == "zh" else "Rules:"
    lines = [persona, "", heading, *(f"- {r}" for r in rules), f"- {BASE_RULES[lang]}"]
    return "\n".join(lines)


def site_dict(site: SupportSite) -> dict[str, Any]:
    return {"id": site.id, "name": site.name, "public_key": site.public_key, "origins": list(site.origins or []),
            "persona": site.persona, "rules": site.rules, "greeting": site.greeting, "language": site.language,
            "knowledge_base_ids": list(site.knowledge_base_ids or []), "model": site.model,
            "handoff_on_no_source": bool(site.handoff_on_no_source), "owner_id": site.user_id,
            "created_at": iso(site.created_at), "updated_at": iso(site.updated_at)}


def public_dict(site: dict[str, Any]) -> dict[str, Any]:
    """What the widget may know about its site."""
    language = site["language"]
    greeting = site["greeting"].strip()
    return {"name": site["name"], "language": language,
            "greeting": greeting or None,
            "default_greeting": DEFAULT_GREETING}


_FIELDS = ("name", "persona", "rules", "greeting", "language", "model", "handoff_on_no_source")


class SiteStore:
    """One owner's support sites (None: the single room of a server without accounts)."""

    def __init__(self, db: Database, owner: int | None = None):
        self.db = db
        self.owner = owner

    def scoped(self, owner: int | None) -> SiteStore:
        return SiteStore(self.db, owner)

    def _get(self, s: Session, site_id: int) -> SupportSite:
        site = s.get(SupportSite, site_id)
        if site is None or site.user_id != self.owner:
            raise NotFoundError("support site", site_id)
        return site

    @staticmethod
    def _check(fields: dict[str, Any]) -> None:
        if fields.get("language") is not None and fields["language"] not in LANGUAGES:
            raise SupportError(f"language must be one of {', '.join(LANGUAGES)}", "language")

    def create(self, name: str, origins: list[str], **fields: Any) -> dict[str, Any]:
        self._check(fields)
        kb_ids = fields.pop("knowledge_base_ids", None)
        with self.db.session() as s:
            site = SupportSite(user_id=self.owner, name=name, public_key=KEY_PREFIX + secrets.token_urlsafe(18),
                               origins=normalize_origins(origins), knowledge_base_ids=list(kb_ids or []) or None,
                               persona=fields.get("persona") or "", rules=fields.get("rules") or "",
                               greeting=fields.get("greeting") or "", language=fields.get("language") or "auto",
                               model=fields.get("model"),
                               handoff_on_no_source=fields.get("handoff_on_no_source", True) is not False)
            s.add(site)
            s.flush()
            return site_dict(site)

    def list(self) -> list[dict[str, Any]]:
        mine = SupportSite.user_id.is_(None) if self.owner is None else SupportSite.user_id == self.owner
        with self.db.session() as s:
            return [site_dict(x) for x in s.scalars(select(SupportSite).where(mine).order_by(SupportSite.id))]

    def get(self, site_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            return site_dict(self._get(s, site_id))

    def update(self, site_id: int, **fields: Any) -> dict[str, Any]:
        """Set any given field (None leaves it); `origins` and `knowledge_base_ids` replace the lists."""
        self._check(fields)
        with self.db.session() as s:
            site = self._get(s, site_id)
            for name in _FIELDS:
                if fields.get(name) is not None:
                    setattr(site, name, fields[name])
            if fields.get("origins") is not None:
                site.origins = normalize_origins(fields["origins"])
            if fields.get("knowledge_base_ids") is not None:
                site.knowledge_base_ids = list(fields["knowledge_base_ids"]) or None
            site.updated_at = utcnow()
            s.flush()
            return site_dict(site)

    def rotate_key(self, site_id: int) -> dict[str, Any]:
        """A new public key; pages with the old one stop working (their visitors start afresh)."""
        with self.db.session() as s:
            site = self._get(s, site_id)
            site.public_key = KEY_PREFIX + secrets.token_urlsafe(18)
            site.updated_at = utcnow()
            s.flush()
            return site_dict(site)

    def delete(self, site_id: int) -> None:
        """The site and its visitors' conversations."""
        with self.db.session() as s:
            site = self._get(s, site_id)
            s.execute(delete(Conversation).where(Conversation.site_id == site.id))
            s.delete(site)


def site_by_key(db: Database, key: str) -> dict[str, Any] | None:
    """The site a widget names (any owner's), or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 64:
        return None
    with db.session() as s:
        site = s.scalar(select(SupportSite).where(SupportSite.public_key == key))
        return site_dict(site) if site is not None else None
