"""Per-user and per-key limits: requests per window (`--rate-limit 60/minute`) and tokens per
window (`--token-quota 200000/day`), a user's own values overriding the server's.

Requests are counted in memory (a sliding window per user and per key: exact, and nothing to
write per request); tokens come from the `usage` table (what each request used, recorded when it
ends), so a quota holds across restarts. A day is a UTC day, as the usage table's rows are.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from aigc.store import Database
from aigc.store.models import UsageDay

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT_RE = re.compile(r"^\s*(\d{1,12})\s*/\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: int
    text: str


def parse_limit(text: str, unit: str = "requests") -> Limit:
    m = _LIMIT_RE.match(text or "")
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"invalid limit {text!r}: expected N/second, N/minute, N/hour or N/day {unit}, "
                         "e.g. 60/minute")
    return Limit(int(m.group(1)), _UNITS[m.group(2)], text.strip())


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def seconds_to_midnight() -> int:
    now = datetime.now(UTC)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()))


@dataclass
class Verdict:
    """Whether a request may run, and the x-ratelimit-* headers it gets either way."""

    allowed: bool
    retry_after: int = 0
    reason: str = ""
    headers: dict[str, str] | None = None


class RateLimiter:
    """Sliding-window request counts per subject (("user", id) or ("key", id))."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, int], deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, subjects: list[tuple[str, int]], limit: Limit) -> tuple[bool, int, float]:
        """Count one request against every subject if all have room: (allowed, remaining, reset_s)."""
        now = time.monotonic()
        with self._lock:
            windows = []
            for subject in subjects:
                hits = self._hits.setdefault(subject, deque())
                while hits and hits[0] <= now - limit.seconds:
                    hits.popleft()
                windows.append(hits)
            fullest = max(windows, key=len)
            reset = (fullest[0] + limit.seconds - now) if fullest else float(limit.seconds)
            if len(fullest) >= limit.count:
                return False, 0, max(reset, 0.001)
            for hits in windows:
                hits.append(now)
            return True, limit.count - len(fullest), reset


    def blocked_for(self, subjects: list[tuple[str, int | str]], limit: Limit) -> float | None:
        """Seconds until one more hit is allowed for every subject, or None if it is allowed now."""
        now = time.monotonic()
        with self._lock:
            waits = []
            for subject in subjects:
                hits = self._hits.get(subject)  # type: ignore[arg-type]
                while hits and hits[0] <= now - limit.seconds:
                    hits.popleft()
                if hits is not None and len(hits) >= limit.count:
                    waits.append(hits[0] + limit.seconds - now)
            return max(waits) if waits else None

    def hit(self, subjects: list[tuple[str, int | str]]) -> None:
        now = time.monotonic()
        with self._lock:
            for subject in subjects:
                self._hits.setdefault(subject, deque()).append(now)  # type: ignore[arg-type]


class UsageBook:
    """Tokens used per user and key per UTC day (the `usage` table)."""

    def __init__(self, db: Database):
        self.db = db

    def record(self, user_id: int, key_id: int | None, prompt_tokens: int, completion_tokens: int) -> None:
        day, key = today(), key_id or 0
        with self.db.session() as s:
            row = s.scalar(select(UsageDay).where(UsageDay.user_id == user_id, UsageDay.key_id == key,
                                                  UsageDay.day == day).with_for_update())
            if row is None:
                row = UsageDay(user_id=user_id, key_id=key, day=day, requests=0, prompt_tokens=0,
                               completion_tokens=0)
                s.add(row)
            row.requests += 1
            row.prompt_tokens += prompt_tokens
            row.completion_tokens += completion_tokens

    def tokens_since(self, user_id: int, key_id: int | None, seconds: int) -> int:
        """Tokens of the user (or of one key) in the days the window covers (a day at least)."""
        days = max(1, seconds // 86400)
        first = (datetime.now(UTC) - timedelta(days=days - 1)).strftime("%Y-%m-%d")
        with self.db.session() as s:
            q = select(func.coalesce(func.sum(UsageDay.prompt_tokens + UsageDay.completion_tokens), 0)).where(
                UsageDay.user_id == user_id, UsageDay.day >= first)
            if key_id is not None:
                q = q.where(UsageDay.key_id == key_id)
            return int(s.scalar(q) or 0)

    def summary(self, user_id: int | None = None, days: int = 30) -> list[dict]:
        first = (datetime.now(UTC) - timedelta(days=days - 1)).strftime("%Y-%m-%d")
        with self.db.session() as s:
            q = select(UsageDay).where(UsageDay.day >= first).order_by(UsageDay.day.desc(), UsageDay.key_id)
            if user_id is not None:
                q = q.where(UsageDay.user_id == user_id)
            return [{"user_id": r.user_id, "key_id": r.key_id or None, "day": r.day, "requests": r.requests,
                     "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens}
                    for r in s.scalars(q)]
