"""Prometheus metrics, one `CollectorRegistry` per app (two servers in one process stay apart).

Counters and histograms are fed from each finished request's `RequestRecord`; the engine's live
state (running and queued requests, KV-cache use) is read from `Engine.stats()` at scrape time,
so the gauges are never stale. The same records feed the dashboard's history (history.py), so its
totals are these counters'.

Two families of names: ours (`aigc_*`, label `model`) and vLLM's where the meaning is the same,
under an `aigc:` prefix with vLLM's `model_name` label (`aigc:time_to_first_token_seconds`,
`aigc:num_requests_running`, ...), so Grafana boards and alerts written for vLLM work here with the
prefix changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from aigc.engine.protocol import EngineStats

if TYPE_CHECKING:
    from aigc.server.history import MetricsHistory
    from aigc.server.request_log import RequestRecord

PREFIX = "aigc"
VLLM_PREFIX = "aigc:"  # vLLM's names (vllm:...) with our prefix
# Status label for a request whose client went away before the response ended (nginx's 499).
CLIENT_CLOSED = 499

_TTFT_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                0.4, 0.5, 0.75, 1.0, 2.5)
_E2E_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0)

StatsSource = Callable[[], Iterable[tuple[str, EngineStats]]]


class _EngineStatsCollector:
    """Gauges read from each local engine when Prometheus scrapes."""

    def __init__(self, source: StatsSource):
        self.source = source

    def collect(self) -> Iterable[GaugeMetricFamily]:
        running = GaugeMetricFamily(f"{PREFIX}_requests_running", "Requests decoding in the engine.", labels=["model"])
        queued = GaugeMetricFamily(f"{PREFIX}_requests_waiting", "Requests queued for a KV slot.", labels=["model"])
        kv = GaugeMetricFamily(f"{PREFIX}_kv_cache_usage_ratio", "Fraction of KV-cache tokens in use (0..1).",
                               labels=["model"])
        slots = GaugeMetricFamily(f"{PREFIX}_kv_slots_used", "KV-cache slots owned by running requests.",
                                  labels=["model"])
        drafted = CounterMetricFamily(f"{PREFIX}_spec_decode_draft_tokens", "Speculative decoding: draft "
                                      "tokens proposed by prompt lookup.", labels=["model"])
        accepted = CounterMetricFamily(f"{PREFIX}_spec_decode_accepted_tokens", "Speculative decoding: draft "
                                       "tokens the model agreed with.", labels=["model"])
        ratio = GaugeMetricFamily(f"{PREFIX}_spec_decode_acceptance_ratio", "Accepted / proposed draft tokens.",
                                  labels=["model"])
        v_running = GaugeMetricFamily(f"{VLLM_PREFIX}num_requests_running", "Number of requests in model execution "
                                      "batches.", labels=["model_name"])
        v_waiting = GaugeMetricFamily(f"{VLLM_PREFIX}num_requests_waiting", "Number of requests waiting to be "
                                      "processed.", labels=["model_name"])
        v_kv = GaugeMetricFamily(f"{VLLM_PREFIX}kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                                 labels=["model_name"])
        for name, stats in self.source():
            running.add_metric([name], stats.running)
            queued.add_metric([name], stats.queued)
            kv.add_metric([name], stats.kv_usage)
            slots.add_metric([name], stats.kv_slots_used)
            drafted.add_metric([name], stats.spec_draft_tokens)
            accepted.add_metric([name], stats.spec_accepted_tokens)
            ratio.add_metric([name], stats.spec_accepted_tokens / stats.spec_draft_tokens if stats.spec_draft_tokens else 0.0)
            v_running.add_metric([name], stats.running)
            v_waiting.add_metric([name], stats.queued)
            v_kv.add_metric([name], stats.kv_usage)
        yield from (running, queued, kv, slots, drafted, accepted, ratio, v_running, v_waiting, v_kv)


class ServerMetrics:
    def __init__(self, stats_source: StatsSource, history: MetricsHistory | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(f"{PREFIX}_requests", "Finished API requests by status.",
                                ["model", "endpoint", "status"], registry=r)
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds", "Time from request to first token.",
                              ["model"], buckets=_TTFT_BUCKETS, registry=r)
        self.itl = Histogram(f"{PREFIX}_inter_token_latency_seconds", "Time between tokens of one choice.",
                             ["model"], buckets=_ITL_BUCKETS, registry=r)
        self.e2e = Histogram(f"{PREFIX}_request_duration_seconds", "Time from request to the response's end.",
                             ["model", "endpoint"], buckets=_E2E_BUCKETS, registry=r)
        self.prompt_tokens = Counter(f"{PREFIX}_prompt_tokens", "Prompt tokens processed.", ["model"], registry=r)
        self.generation_tokens = Counter(f"{PREFIX}_generation_tokens", "Tokens generated.", ["model"], registry=r)
        self.in_flight = Gauge(f"{PREFIX}_requests_in_flight", "Generation requests being answered "
                               "(local or proxied to a remote).", ["model"], registry=r)
        # Moderation: checks by where the text came from (api | input | output) and flagged ones by
        # category and what the policy did (none | log | warn | block).
        self.moderation_checks = Counter(f"{PREFIX}_moderation_checks", "Texts moderated.", ["source"], registry=r)
        self.moderation_flags = Counter(f"{PREFIX}_moderation_flagged", "Texts flagged, per category and action.",
                                        ["source", "category", "action"], registry=r)
        # vLLM's names (same buckets as ours; only requests a served model answered).
        self.v_ttft = Histogram(f"{VLLM_PREFIX}time_to_first_token_seconds", "Histogram of time to first token in "
                                "seconds.", ["model_name"], buckets=_TTFT_BUCKETS, registry=r)
        self.v_itl = Histogram(f"{VLLM_PREFIX}inter_token_latency_seconds", "Histogram of inter-token latency in "
                               "seconds.", ["model_name"], buckets=_ITL_BUCKETS, registry=r)
        self.v_e2e = Histogram(f"{VLLM_PREFIX}e2e_request_latency_seconds", "Histogram of end to end request "
                               "latency in seconds.", ["model_name"], buckets=_E2E_BUCKETS, registry=r)
        self.v_prompt_tokens = Counter(f"{VLLM_PREFIX}prompt_tokens", "Number of prefill tokens processed.",
                                       ["model_name"], registry=r)
        self.v_generation_tokens = Counter(f"{VLLM_PREFIX}generation_tokens", "Number of generation tokens "
                                           "processed.", ["model_name"], registry=r)
        # vLLM counts tokens here too: prompt tokens looked up in the prefix cache, and those found.
        self.v_prefix_queries = Counter(f"{VLLM_PREFIX}prefix_cache_queries", "Prefix cache queries, in terms of "
                                        "number of queried tokens.", ["model_name"], registry=r)
        self.v_prefix_hits = Counter(f"{VLLM_PREFIX}prefix_cache_hits", "Prefix cache hits, in terms of number "
                                     "of cached tokens.", ["model_name"], registry=r)
        r.register(_EngineStatsCollector(stats_source))
        self.history = history

    def moderation(self, results: list, source: str, action: str) -> None:
        self.moderation_checks.labels(source).inc(len(results))
        for result in results:
            for category in result.flagged_categories:
                self.moderation_flags.labels(source, category, action).inc()

    def observe(self, record: RequestRecord) -> None:
        status = record.final_status
        self.requests.labels(record.model, record.endpoint, str(status)).inc()
        self.e2e.labels(record.model, record.endpoint).observe(record.total_s)
        if record.model:
            model = record.model
            self.v_e2e.labels(model).observe(record.total_s)
            if record.prompt_tokens:
                self.prompt_tokens.labels(model).inc(record.prompt_tokens)
                self.v_prompt_tokens.labels(model).inc(record.prompt_tokens)
                self.v_prefix_queries.labels(model).inc(record.prompt_tokens)
            if record.cached_tokens:
                self.v_prefix_hits.labels(model).inc(record.cached_tokens)
            if record.completion_tokens:
                self.generation_tokens.labels(model).inc(record.completion_tokens)
                self.v_generation_tokens.labels(model).inc(record.completion_tokens)
            if record.ttft_s is not None:
                self.ttft.labels(model).observe(record.ttft_s)
                self.v_ttft.labels(model).observe(record.ttft_s)
            itl, v_itl = self.itl.labels(model), self.v_itl.labels(model)
            for gap in record.itl_samples:
                itl.observe(gap)
                v_itl.observe(gap)
        if self.history is not None:
            self.history.observe(record)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
