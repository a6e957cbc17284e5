"""The process's Prometheus metrics, multiprocess-safe when ``PROMETHEUS_MULTIPROC_DIR`` is set.

prometheus_client picks its value store when a metric is created: with ``PROMETHEUS_MULTIPROC_DIR``
in the environment every process (gunicorn workers, RQ work-horses) writes its own mmap files there
and a scrape merges them (:func:`exposition`); without it the values live in this process only.
Labels are bounded sets (outcome, provider, service, status class, reason): never a per-item or
per-mailbox label, and recording costs no Redis call.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

# RQ forks a work-horse per job: keyed by its pid, the multiprocess directory would gain a file set
# per job (and every scrape reads them all). A horse writes under its worker's name instead
# (:func:`write_as`): a worker runs one horse at a time and records nothing itself, and the name
# differs from the worker's pid, so prometheus_client reopens the files in each horse (re-reading
# what the worker's earlier horses wrote) rather than writing through the worker's stale maps.
_names: dict[int, str] = {}


def _process_identifier() -> int | str:
    return _names.get(os.getpid()) or os.getpid()


def write_as(name: str) -> None:
    """Record this process's metrics under ``name`` (an RQ work-horse: its worker's) in multiprocess mode."""
    _names[os.getpid()] = name


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Before any metric exists: the value class is taken when a metric is made.
    values.ValueClass = values.MultiProcessValue(_process_identifier)

PREFIX = "sidebar_sync_"
RUNS = Counter(PREFIX + "runs", "Sync runs by outcome and provider", ["outcome", "provider"])
RUN_SECONDS = Histogram(PREFIX + "run_duration_seconds", "Sync run duration", ["provider"],
                        buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))
ITEMS = Counter(PREFIX + "items", "Items a run handled, by what became of them", ["result"])
SKIPPED = Counter(PREFIX + "items_skipped", "Items never logged, by reason", ["reason"])
OUTBOUND = Counter(PREFIX + "outbound_requests", "Outside calls by service and status class", ["service", "status"])
THROTTLED = Counter(PREFIX + "throttled", "Outside answers that said slow down (429, 503)", ["service"])
# Runs the engine did not start (paused, disabled, the org's API back-off...): a bounded reason set.
RUNS_NOT_STARTED = Counter(PREFIX + "runs_not_started", "Sync jobs that ended before a run, by reason",
                           ["reason", "provider"])
WEBHOOKS = Counter(PREFIX + "webhook_notifications", "Push notifications received", ["source", "outcome"])
API_BUDGET = Counter(PREFIX + "salesforce_api_calls", "Salesforce API calls the runs spent (the org budget)")
# One series per org (a bounded set: the customers), the last reading any process saw.
API_USED = Gauge(PREFIX + "org_api_budget_used_ratio", "The org's Salesforce API use in 24 h over its limit",
                 ["org_id"], multiprocess_mode="mostrecent")

# A gauge computed at scrape time: (name, help, {label values: value}, label names).
ScrapeGauge = tuple[str, str, Mapping[tuple[str, ...], float], tuple[str, ...]]

# The run counts exported as ITEMS (result label): a fixed set, so the label cannot grow.
ITEM_RESULTS = ("read", "written", "duplicates", "filtered", "quarantined", "deletions")


def record_run(outcome: str, provider: str, seconds: float, counts: Mapping[str, Any], salesforce_calls: int) -> None:
    """Count one finished run: its outcome, duration, items by result and skips by reason."""
    provider = provider or "unknown"
    RUNS.labels(outcome, provider).inc()
    RUN_SECONDS.labels(provider).observe(seconds)
    for result in ITEM_RESULTS:
        if counts.get(result):
            ITEMS.labels(result).inc(counts[result])
    for reason, n in (counts.get("filtered_by") or {}).items():
        SKIPPED.labels(reason).inc(n)
    if salesforce_calls:
        API_BUDGET.inc(salesforce_calls)


def record_not_started(reason: str, provider: str) -> None:
    """Count a sync job that ended without a run (the mailbox paused, disabled, gone, or backing off)."""
    RUNS_NOT_STARTED.labels(reason, provider or "unknown").inc()


def record_api_usage(org_id: str, used: int, limit: int) -> None:
    """Note an org's Salesforce API usage as Salesforce last reported it."""
    if limit > 0:
        API_USED.labels(org_id).set(used / limit)


def record_outbound(service: str, status: int | None) -> None:
    """Count one outside call by service and status class (``2xx``.., ``error`` when no answer)."""
    label = f"{status // 100}xx" if status else "error"
    OUTBOUND.labels(service, label).inc()
    if status in (429, 503):
        THROTTLED.labels(service).inc()


def record_webhook(source: str, outcome: str, n: int = 1) -> None:
    """Count ``n`` Graph or Gmail push notifications by what we made of them."""
    if n > 0:
        WEBHOOKS.labels(source, outcome).inc(n)


class _Gauges:
    """A collector of values computed at scrape time (queue depth, overdue age, clock tick)."""

    def __init__(self, gauges: Iterable[ScrapeGauge]) -> None:
        self.gauges = list(gauges)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """One gauge family per (name, help, {labels: value}, label names)."""
        for name, doc, samples, labels in self.gauges:
            family = GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))
            for key, value in samples.items():
                family.add_metric(list(key), value)
            yield family


def exposition(gauges: Iterable[ScrapeGauge] = ()) -> bytes:
    """The text a scrape answers: every process's counters (merged in multiprocess mode) and ``gauges``."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    extra = CollectorRegistry()
    extra.register(_Gauges(gauges))
    return text + generate_latest(extra)
