"""The RQ worker class for ``rq worker -w backend.jobs.worker.Worker``.

RQ imports job code only when a job runs, so a misconfigured worker would start, then fail every
job with a traceback. This worker builds the app first: a missing or malformed setting stops it at
start with one clear line, as the web process does.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

import rq

from backend.config import ConfigError
from backend.jobs.context import use_app
from backend.observability.metrics import write_as

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
            use_app(create_app())
        except ConfigError as exc:
            print(f"sidebar-sync worker: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(3) from None
        super().__init__(*args, **kwargs)

    def main_work_horse(self, *args: Any, **kwargs: Any) -> None:
        """As RQ does, with the horse's metrics written under its worker's name (one file set a worker)."""
        write_as(f"rq-{os.getppid()}")
        tune_gc_for_jobs()
        super().main_work_horse(*args, **kwargs)
