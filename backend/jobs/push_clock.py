"""The clock's push entry: ``push_check`` every ``PUSH_CHECK_SECONDS`` (renewals, deletions)."""

from __future__ import annotations

from rq import cron

from backend.config import Settings
from backend.extensions import QUEUE_INTERACTIVE
from backend.jobs.push import push_check

# Interactive, like the tick: it only queues short jobs and must not wait behind a backlog of runs.
cron.register(push_check, queue_name=QUEUE_INTERACTIVE, interval=max(1, Settings.from_environ().PUSH_CHECK_SECONDS),
              job_timeout=120, result_ttl=600)
