"""Test helpers that run the app's own machinery (the sign-in helpers live in :mod:`sandbox.login`)."""

from __future__ import annotations


def run_queued(*names: str) -> None:
    """Run what is queued (the interactive and sync queues by default) in this process, then stop."""
    from rq import SimpleWorker

    from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services

    svc = services()
    queues = [svc.queue(name) for name in (names or (QUEUE_INTERACTIVE, QUEUE_SYNC))]
    SimpleWorker(queues, connection=svc.redis_raw).work(burst=True)


def prometheus_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text through prometheus_client's own parser: {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
