"""The RQ worker class for ``rq worker -w backend.jobs.worker.Worker``.

RQ imports job code only when a job runs, so a misconfigured worker would start, then fail every
job with a traceback. This worker builds the app first: a missing or malformed setting stops it at
start with one clear line, as the web process does.
"""

from __future__ import annotations

import sys
from typing import Any

import rq

from backend.config import ConfigError
from backend.jobs.context import use_app


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
