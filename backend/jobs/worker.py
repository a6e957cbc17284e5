"""The RQ worker class for ``rq worker -w backend.jobs.worker.Worker``.

RQ imports job code only when a job runs, so a misconfigured worker would start, then fail every
job with a traceback. This worker builds the app first: a missing or malformed setting stops it at
start with one clear line, as the web process does.

Its Redis clients (the app's and RQ's own) retry for longer than redis-py's default: a Redis restart
or failover of a few seconds is waited out instead of failing the running run and taking the
worker down with it (RQ quits when its job's heartbeat cannot reach Redis; the run then waits for
abandoned-job detection). The web keeps the quick default, so ``/healthz`` answers 503 at once.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

import rq
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

from backend.config import ConfigError
from backend.extensions import services
from backend.jobs.context import use_app
from backend.observability.metrics import write_as

# Reconnect attempts after a lost Redis connection, backing off 0.1 s doubling to 2 s (half of it
# jittered, so a fleet of workers does not reconnect in step): between 5.5 and 11 s in all.
REDIS_RETRIES = 8
REDIS_BACKOFF_BASE_SECONDS = 0.1
REDIS_BACKOFF_CAP_SECONDS = 2.0


def patient_retry() -> Retry:
    """The retry policy of a worker's Redis clients: rides over a restart or failover of a few seconds."""
    return Retry(EqualJitterBackoff(cap=REDIS_BACKOFF_CAP_SECONDS, base=REDIS_BACKOFF_BASE_SECONDS), REDIS_RETRIES)


# The work horse (one forked process per job) collects young garbage every 50,000 allocations,
# not every 700: a backfill allocates millions of small objects that live for a batch, and the
# default spent a fifth of a 10,000-email run's CPU re-scanning them (+4 MB peak, bench/README.md).
HORSE_GC_THRESHOLDS = (50_000, 10, 10)


def tune_gc_for_jobs() -> None:
    """The garbage collector's thresholds for a process that runs jobs (the work horse; the benchmark)."""
    gc.set_threshold(*HORSE_GC_THRESHOLDS)


class Worker(rq.Worker):
    """rq.Worker that assembles the application before taking jobs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from backend import create_app

        try:
            app = create_app()
        except ConfigError as exc:
            print(f"sidebar-sync worker: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(3) from None
        with app.app_context():
            svc = services()
            svc.redis.set_retry(patient_retry())
            svc.redis_raw.set_retry(patient_retry())
        use_app(app)
        super().__init__(*args, **kwargs)
        # RQ's own connection (heartbeats, registries; its scheduler's is made from the same settings).
        self.connection.set_retry(patient_retry())

    def main_work_horse(self, *args: Any, **kwargs: Any) -> None:
        """As RQ does, with the horse's metrics written under its worker's name (one file set a worker)."""
        write_as(f"rq-{os.getppid()}")
        tune_gc_for_jobs()
        super().main_work_horse(*args, **kwargs)
