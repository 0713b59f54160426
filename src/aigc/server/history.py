"""The metrics' history for the dashboard: what /metrics counts, kept over time in the app database.

Prometheus keeps history by scraping; a server without a Prometheus still needs "how did the last
24 hours go". So every finished request that reached a model (or failed on the model API, or was
refused with a 429) is added to a 10-second slice per model, from the same `RequestRecord` the
Prometheus counters read (metrics.py): the dashboard's totals are the counters' totals. The
engine's gauges (running, waiting, KV-cache use) are sampled every second and their maxima kept
per slice, so queue build-ups between two requests show.

A slice is one row of `metric_slices`: counters, sums, and latency sketches (log-spaced buckets,
relative error under 4%, so a percentile over any window is a merge of its rows' buckets). Rows
are written every 10 s (and before each dashboard query and at shutdown), so a restart loses at
most one slice; a slice written twice (a query in the middle of it, two server processes on one
database) is two rows, which add up. Rows older than `metrics_history_days` (AIGC_METRICS_HISTORY_DAYS) are deleted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from starlette.concurrency import run_in_threadpool

from aigc.engine.protocol import EngineStats
from aigc.store.models import MetricSlice

if TYPE_CHECKING:
    from aigc.server.request_log import RequestRecord
    from aigc.store import Database

log = logging.getLogger("aigc.server.history")

SLICE_MS = 10_000
SAMPLE_S = 1.0
FLUSH_S = 10.0
PRUNE_S = 3600.0
MAX_PENDING = 50_000  # slices held while the database refuses writes; beyond, the oldest are dropped
RATE_LIMITED = 429

# Requests a model answered are always counted; without a model only failures on the model API,
# 429s and server errors (not the web app's own 404s, nor a login page's 401).
_MODEL_API = ("/v1/", "/tokenize", "/detokenize")

# Windows the dashboard offers: (seconds, step of its charts in seconds).
WINDOWS: dict[str, tuple[int, int]] = {"5m": (300, 10), "1h": (3600, 60), "24h": (86400, 900), "7d": (604800, 3600)}

_GAMMA = 1.08  # bucket i holds [γ^i, γ^(i+1)); its midpoint is within (γ-1)/2 = 4% of any value in it
_LOG_GAMMA = math.log(_GAMMA)
_SMALLEST = 1e-6  # seconds: values below (a 0 gap) go to this bucket


def counted(record: RequestRecord) -> bool:
    if record.model:
        return True
    status = record.final_status
    if status < 400:
        return False
    return status == RATE_LIMITED or status >= 500 or record.path.startswith(_MODEL_API)


@dataclass
class Sketch:
    """A latency distribution: count, sum and log-spaced bucket counts (mergeable, bounded error)."""

    count: int = 0
    total: float = 0.0
    buckets: Counter[int] = field(default_factory=Counter)

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.buckets[math.floor(math.log(max(value, _SMALLEST)) / _LOG_GAMMA)] += 1

    def merge(self, count: int, total: float, buckets: dict[str, int] | dict[int, int] | None) -> None:
        self.count += count
        self.total += total
        for k, n in (buckets or {}).items():
            self.buckets[int(k)] += n

    def quantile(self, q: float) -> float | None:
        n = sum(self.buckets.values())
        if not n:
            return None
        rank, seen = max(1, math.ceil(q * n)), 0
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            if seen >= rank:
                return _GAMMA ** k * (1 + _GAMMA) / 2
        return None  # unreachable

    def summary(self) -> dict[str, float | int | None]:
        return {"count": self.count, "sum": self.total, "mean": self.total / self.count if self.count else None,
                "p50": self.quantile(0.5), "p90": self.quantile(0.9), "p95": self.quantile(0.95),
                "p99": self.quantile(0.99)}

    def to_json(self) -> dict[str, int]:
        return {str(k): n for k, n in self.buckets.items()}


@dataclass
class Slice:
    """One model's counts over a stretch of time (a 10 s slice, or a chart step, or a window)."""

    requests: int = 0
    errors: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    cached_tokens: int = 0
    ttft: Sketch = field(default_factory=Sketch)
    itl: Sketch = field(default_factory=Sketch)
    e2e: Sketch = field(default_factory=Sketch)
    statuses: Counter[str] = field(default_factory=Counter)
    error_types: Counter[str] = field(default_factory=Counter)  # "status code" -> requests
    running_max: int = 0
    waiting_max: int = 0
    kv_usage_max: float = 0.0

    def add_request(self, record: RequestRecord) -> None:
        """Counted as metrics.py counts it (its Prometheus twins named in the comments)."""
        status = record.final_status
        self.requests += 1  # aigc_requests_total
        self.statuses[str(status)] += 1
        if status >= 400 or record.error:
            self.errors += 1
            self.error_types[f"{status} {record.error_code or _status_code(status)}"] += 1
        if status == RATE_LIMITED:
            self.rate_limited += 1
        if not record.model:
            return
        self.prompt_tokens += record.prompt_tokens  # aigc:prompt_tokens_total, aigc:prefix_cache_queries_total
        self.generation_tokens += record.completion_tokens  # aigc:generation_tokens_total
        self.cached_tokens += record.cached_tokens  # aigc:prefix_cache_hits_total
        self.e2e.add(record.total_s)  # aigc:e2e_request_latency_seconds
        if record.ttft_s is not None:
            self.ttft.add(record.ttft_s)  # aigc:time_to_first_token_seconds
        for gap in record.itl_samples:
            self.itl.add(gap)  # aigc:inter_token_latency_seconds

    def add_sample(self, stats: EngineStats) -> None:
        self.running_max = max(self.running_max, stats.running)
        self.waiting_max = max(self.waiting_max, stats.queued)
        self.kv_usage_max = max(self.kv_usage_max, stats.kv_usage)

    def add_slice(self, other: Slice) -> None:
        for name in ("requests", "errors", "rate_limited", "prompt_tokens", "generation_tokens", "cached_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("ttft", "itl", "e2e"):
            mine, theirs = getattr(self, name), getattr(other, name)
            mine.merge(theirs.count, theirs.total, theirs.buckets)
        self.statuses.update(other.statuses)
        self.error_types.update(other.error_types)
        self.running_max = max(self.running_max, other.running_max)
        self.waiting_max = max(self.waiting_max, other.waiting_max)
        self.kv_usage_max = max(self.kv_usage_max, other.kv_usage_max)

    def add_row(self, row: MetricSlice) -> None:
        self.requests += row.requests
        self.errors += row.errors
        self.rate_limited += row.rate_limited
        self.prompt_tokens += row.prompt_tokens
        self.generation_tokens += row.generation_tokens
        self.cached_tokens += row.cached_tokens
        self.ttft.merge(row.ttft_count, row.ttft_sum, row.ttft_buckets)
        self.itl.merge(row.itl_count, row.itl_sum, row.itl_buckets)
        self.e2e.merge(row.e2e_count, row.e2e_sum, row.e2e_buckets)
        self.statuses.update(row.statuses or {})
        self.error_types.update(row.error_types or {})
        self.running_max = max(self.running_max, row.running_max)
        self.waiting_max = max(self.waiting_max, row.waiting_max)
        self.kv_usage_max = max(self.kv_usage_max, row.kv_usage_max)

    def is_empty(self) -> bool:
        return not (self.requests or self.running_max or self.waiting_max or self.kv_usage_max)

    def to_row(self, start_ms: int, model: str) -> MetricSlice:
        return MetricSlice(
            start_ms=start_ms, model=model, requests=self.requests, errors=self.errors,
            rate_limited=self.rate_limited, prompt_tokens=self.prompt_tokens,
            generation_tokens=self.generation_tokens, cached_tokens=self.cached_tokens,
            ttft_count=self.ttft.count, ttft_sum=self.ttft.total, ttft_buckets=self.ttft.to_json(),
            itl_count=self.itl.count, itl_sum=self.itl.total, itl_buckets=self.itl.to_json(),
            e2e_count=self.e2e.count, e2e_sum=self.e2e.total, e2e_buckets=self.e2e.to_json(),
            statuses=dict(self.statuses), error_types=dict(self.error_types), running_max=self.running_max,
            waiting_max=self.waiting_max, kv_usage_max=self.kv_usage_max)

    def summary(self, seconds: float) -> dict[str, Any]:
        return {
            "requests": self.requests, "errors": self.errors, "rate_limited": self.rate_limited,
            "prompt_tokens": self.prompt_tokens, "generation_tokens": self.generation_tokens,
            "cached_tokens": self.cached_tokens,
            "prefix_cache_hit_rate": self.cached_tokens / self.prompt_tokens if self.prompt_tokens else None,
            "tokens_per_s": self.generation_tokens / seconds if seconds else 0.0,
            "ttft": self.ttft.summary(), "itl": self.itl.summary(), "e2e": self.e2e.summary(),
            "statuses": dict(self.statuses), "running_max": self.running_max, "waiting_max": self.waiting_max,
            "kv_usage_max": self.kv_usage_max,
        }


def _status_code(status: int) -> str:
    return {499: "client_closed_request", 429: "rate_limit_exceeded"}.get(status, f"http_{status}")


StatsSource = Callable[[], Iterable[tuple[str, EngineStats]]]


class MetricsHistory:
    """Slices being filled (in memory) and written (the database); queries over windows."""

    def __init__(self, database: Callable[[], Database], stats_source: StatsSource, retention_days: float = 30.0,
                 clock: Callable[[], float] = time.time):
        self._database = database
        self._stats = stats_source
        self.retention_days = retention_days
        self._clock = clock
        self._pending: dict[tuple[int, str], Slice] = {}
        self._lock = threading.Lock()  # observe/sample on the event loop, flush on a worker thread
        self._write_lock = threading.Lock()  # one flush at a time (keeps rows in order, retries whole)

    @property
    def enabled(self) -> bool:
        return self.retention_days > 0

    def _slice(self, model: str) -> Slice:
        start = int(self._clock() * 1000) // SLICE_MS * SLICE_MS
        key = (start, model)
        found = self._pending.get(key)
        if found is None:
            found = self._pending[key] = Slice()
        return found

    def observe(self, record: RequestRecord) -> None:
        if self.enabled and counted(record):
            with self._lock:
                self._slice(record.model).add_request(record)

    def sample(self) -> None:
        """The engines' gauges now (every second)."""
        if not self.enabled:
            return
        stats = list(self._stats())
        with self._lock:
            for name, s in stats:
                if s.running or s.queued:  # an idle engine writes no rows (its cache may stay filled)
                    self._slice(name).add_sample(s)

    def flush(self, *, all_slices: bool = True) -> None:
        """Write pending slices (`all_slices=False`: those whose 10 s are over). Blocking."""
        if not self.enabled:
            return
        with self._write_lock:
            now_slice = int(self._clock() * 1000) // SLICE_MS * SLICE_MS
            with self._lock:
                taken = {k: v for k, v in self._pending.items() if all_slices or k[0] < now_slice}
                for k in taken:
                    del self._pending[k]
            rows = [s.to_row(start, model) for (start, model), s in sorted(taken.items()) if not s.is_empty()]
            if not rows:
                return
            try:
                with self._database().session() as session:
                    session.add_all(rows)
            except Exception as e:  # the database is down or locked: keep the slices for the next try
                log.warning("metrics history not written (%d slices kept): %s", len(taken), e)
                with self._lock:
                    for k, s in taken.items():
                        self._pending.setdefault(k, Slice()).add_slice(s)
                    while len(self._pending) > MAX_PENDING:
                        del self._pending[min(self._pending)]

    def prune(self) -> None:
        if not self.enabled:
            return
        cutoff = int((self._clock() - self.retention_days * 86400) * 1000)
        with self._database().session() as session:
            session.execute(delete(MetricSlice).where(MetricSlice.start_ms < cutoff))

    async def run(self) -> None:
        """The server's background loop: sample every second, write every 10 s, prune hourly (the
        server cancels it at shutdown, then calls `flush()` for the slices being filled)."""
        if not self.enabled:
            return
        last_flush = last_prune = time.monotonic()
        while True:
            await asyncio.sleep(SAMPLE_S)
            self.sample()
            now = time.monotonic()
            if now - last_flush >= FLUSH_S:
                last_flush = now
                await run_in_threadpool(self.flush, all_slices=False)
            if now - last_prune >= PRUNE_S:
                last_prune = now
                try:
                    await run_in_threadpool(self.prune)
                except Exception as e:
                    log.warning("metrics history not pruned: %s", e)

    # ---- reading ------------------------------------------------------------------------------

    def query(self, window: str, model: str | None = None) -> dict[str, Any]:
        """Totals per model and over all (or `model`), and chart series, over one of `WINDOWS`.

        The window ends with the chart step now under way and starts `seconds` before, on a step
        boundary, so every point of a chart covers a whole step (the last one so far)."""
        self.flush()
        seconds, step = WINDOWS[window]
        step_ms = step * 1000
        now_ms = int(self._clock() * 1000)
        end_ms = (now_ms // step_ms + 1) * step_ms
        points = seconds // step
        start_ms = end_ms - points * step_ms
        per_model: dict[str, Slice] = {}
        series = [Slice() for _ in range(points)]
        if self.enabled:
            with self._database().session() as session:
                rows = session.scalars(select(MetricSlice).where(MetricSlice.start_ms >= start_ms)
                                       .order_by(MetricSlice.start_ms))
                for row in rows:
                    per_model.setdefault(row.model, Slice()).add_row(row)
                    if model is None or row.model == model:
                        series[min(points - 1, (row.start_ms - start_ms) // step_ms)].add_row(row)
        total = Slice()
        for name, s in per_model.items():
            if model is None or name == model:
                total.add_slice(s)
        covered = max(1.0, (now_ms - start_ms) / 1000)
        return {
            "window": window, "seconds": seconds, "step": step, "start": start_ms / 1000, "now": now_ms / 1000,
            "model": model, "totals": total.summary(covered),
            "models": {name: s.summary(covered) for name, s in sorted(per_model.items())},
            "errors": sorted(({"model": name, "status": int(key.split(" ", 1)[0]), "code": key.split(" ", 1)[1],
                               "count": n} for name, s in per_model.items() for key, n in s.error_types.items()),
                             key=lambda e: (-e["count"], e["model"], e["status"])),
            "series": _series(series, start_ms, step),
        }


def _series(points: list[Slice], start_ms: int, step: int) -> dict[str, list]:
    """Columns for the charts: one value per step (None where a latency has no sample)."""
    def q(name: str, quantile: float) -> list[float | None]:
        return [getattr(p, name).quantile(quantile) for p in points]

    return {
        "t": [start_ms / 1000 + i * step for i in range(len(points))],
        "requests": [p.requests for p in points],
        "errors": [p.errors for p in points],
        "rate_limited": [p.rate_limited for p in points],
        "prompt_tokens_per_s": [p.prompt_tokens / step for p in points],
        "generation_tokens_per_s": [p.generation_tokens / step for p in points],
        "ttft_p50": q("ttft", 0.5), "ttft_p95": q("ttft", 0.95), "ttft_p99": q("ttft", 0.99),
        "itl_p50": q("itl", 0.5), "itl_p95": q("itl", 0.95), "itl_p99": q("itl", 0.99),
        "e2e_p50": q("e2e", 0.5), "e2e_p95": q("e2e", 0.95),
        "running_max": [p.running_max for p in points],
        "waiting_max": [p.waiting_max for p in points],
        "kv_usage_max": [p.kv_usage_max for p in points],
    }
