"""Users, their passwords (argon2id), API keys and login sessions, in the app database.

Nothing reversible is stored: passwords as argon2id hashes, API keys and session tokens as SHA-256
of 32 random bytes (high-entropy secrets need no slow hash, and every request checks one). The
first admin inherits what was made before accounts existed (rows without an owner), so turning
accounts on does not hide a single-user installation's conversations.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select, update

from aigc.store import Database
from aigc.store.models import APIKey, Conversation, LoginSession, StoredResponse, User, UserTemplate

NAME_RE = re.compile(r"^[\w.@-]{1,64}$")  # letters of any script, digits, _ . @ -
MIN_PASSWORD = 8
SESSION_DAYS = 14
KEY_PREFIX = "aigc-"
_hasher = PasswordHasher()  # argon2id, the library's recommended parameters
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountError(ValueError):
    """A user mistake (unknown user, weak password, taken name); one line for the CLI or a 4xx."""


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    role: str
    rate_limit: str | None = None
    token_quota: str | None = None
    created_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "rate_limit": self.rate_limit,
                "token_quota": self.token_quota,
                "created_at": self.created_at.isoformat() if self.created_at else None}


def _info(u: User) -> UserInfo:
    return UserInfo(u.id, u.name, u.role, u.rate_limit, u.token_quota, _aware(u.created_at))


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("the password is too long: at most 1024 characters")


class UserStore:
    def __init__(self, db: Database):
        self.db = db

    # ---- users --------------------------------------------------------------------------------

    def count(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(User)) or 0)

    def add(self, name: str, password: str | None, *, admin: bool = False, staff: bool = False) -> UserInfo:
        """A user; `admin` runs the server, `staff` answers every support site's customers."""
        if not NAME_RE.match(name):
            raise AccountError(f"invalid user name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-'")
        if password is not None:
            check_password(password)
        with self.db.session() as s:
            if s.scalar(select(User.id).where(User.name == name)) is not None:
                raise AccountError(f"user {name!r} already exists")
            first_admin = admin and s.scalar(select(func.count()).select_from(User).where(User.role == "admin")) == 0
            user = User(name=name, password_hash=_hasher.hash(password) if password else "",
                        role="admin" if admin else "staff" if staff else "user")
            s.add(user)
            s.flush()
            if first_admin:
                for model in (Conversation, UserTemplate, StoredResponse):
                    s.execute(update(model).where(model.user_id.is_(None)).values(user_id=user.id))
            return _info(user)

    def list(self) -> list[UserInfo]:
        with self.db.session() as s:
            return [_info(u) for u in s.scalars(select(User).order_by(User.id))]

    def get(self, user_id: int) -> UserInfo | None:
        with self.db.session() as s:
            u = s.get(User, user_id)
            return _info(u) if u is not None else None

    def by_name(self, name: str) -> UserInfo:
        with self.db.session() as s:
            u = s.scalar(select(User).where(User.name == name))
            if u is None:
                raise AccountError(f"no user named {name!r}")
            return _info(u)

    def remove(self, name: str) -> None:
        """Remove a user and everything they own (conversations, templates, keys, sessions)."""
        with self.db.session() as s:
            u = s.scalar(select(User).where(User.name == name))
            if u is None:
                raise AccountError(f"no user named {name!r}")
            s.delete(u)

    def set_password(self, name: str, password: str) -> None:
        check_password(password)
        with self.db.session() as s:
            u = s.scalar(select(User).where(User.name == name))
            if u is None:
                raise AccountError(f"no user named {name!r}")
            u.password_hash = _hasher.hash(password)
            s.execute(LoginSession.__table__.delete().where(LoginSession.user_id == u.id))  # log out everywhere

    def set_limits(self, name: str, *, rate_limit: str | None = None, token_quota: str | None = None) -> UserInfo:
        with self.db.session() as s:
            u = s.scalar(select(User).where(User.name == name))
            if u is None:
                raise AccountError(f"no user named {name!r}")
            if rate_limit is not None:
                u.rate_limit = rate_limit or None
            if token_quota is not None:
                u.token_quota = token_quota or None
            return _info(u)

    def authenticate(self, name: str, password: str) -> UserInfo | None:
        """The user if the password is right. Unknown names cost a hash check too (no timing oracle)."""
        with self.db.session() as s:
            u = s.scalar(select(User).where(User.name == name))
            stored = u.password_hash if u is not None and u.password_hash else _DUMMY_HASH
            try:
                ok = _hasher.verify(stored, password) and u is not None and bool(u.password_hash)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                ok = False
            if ok and _hasher.check_needs_rehash(stored):
                u.password_hash = _hasher.hash(password)
            return _info(u) if ok else None

    # ---- sessions -----------------------------------------------------------------------------

    def create_session(self, user_id: int, days: float = SESSION_DAYS) -> str:
        token = secrets.token_urlsafe(32)
        with self.db.session() as s:
            s.execute(LoginSession.__table__.delete().where(LoginSession.expires_at < _now()))
            s.add(LoginSession(id=_sha256(token), user_id=user_id, expires_at=_now() + timedelta(days=days)))
        return token

    def session_user(self, token: str) -> UserInfo | None:
        with self.db.session() as s:
            row = s.get(LoginSession, _sha256(token))
            if row is None or _aware(row.expires_at) < _now():
                return None
            u = s.get(User, row.user_id)
            return _info(u) if u is not None else None

    def end_session(self, token: str) -> None:
        with self.db.session() as s:
            s.execute(LoginSession.__table__.delete().where(LoginSession.id == _sha256(token)))

    # ---- API keys -----------------------------------------------------------------------------

    def create_key(self, user_id: int, label: str = "") -> tuple[str, dict[str, Any]]:
        """(the key, shown once; its listing)."""
        if len(label) > 100:
            raise AccountError("the key's name is too long: at most 100 characters")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.db.session() as s:
            if s.get(User, user_id) is None:
                raise AccountError(f"no user with id {user_id}")
            row = APIKey(user_id=user_id, name=label, prefix=key[:11], key_hash=_sha256(key))
            s.add(row)
            s.flush()
            return key, _key_dict(row)

    def list_keys(self, user_id: int | None = None) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(APIKey, User.name).join(User, User.id == APIKey.user_id).order_by(APIKey.id)
            if user_id is not None:
                q = q.where(APIKey.user_id == user_id)
            return [{**_key_dict(k), "user": name} for k, name in s.execute(q)]

    def revoke_key(self, key_id: int, user_id: int | None = None) -> bool:
        """Revoke a key (of `user_id` only, when given). False if there is no such key."""
        with self.db.session() as s:
            row = s.get(APIKey, key_id)
            if row is None or (user_id is not None and row.user_id != user_id):
                return False
            if row.revoked_at is None:
                row.revoked_at = _now()
            return True

    def key_user(self, key: str) -> tuple[UserInfo, int] | None:
        """(user, key id) for a valid, unrevoked key; its last-used time is kept to the minute."""
        if not key.startswith(KEY_PREFIX):
            return None
        with self.db.session() as s:
            row = s.scalar(select(APIKey).where(APIKey.key_hash == _sha256(key)))
            if row is None or row.revoked_at is not None:
                return None
            now = _now()
            last = _aware(row.last_used_at)
            if last is None or now - last > timedelta(minutes=1):
                row.last_used_at = now
            u = s.get(User, row.user_id)
            return (_info(u), row.id) if u is not None else None


def _key_dict(k: APIKey) -> dict[str, Any]:
    def iso(dt: datetime | None) -> str | None:
        dt = _aware(dt)
        return dt.isoformat() if dt else None

    return {"id": k.id, "name": k.name, "prefix": k.prefix, "created_at": iso(k.created_at),
            "last_used_at": iso(k.last_used_at), "revoked": k.revoked_at is not None,
            "revoked_at": iso(k.revoked_at)}
