"""The clock: ``rq cron backend/jobs/schedule.py`` enqueues ``tick`` every minute.

A tick claims the mailboxes whose next run time has passed (a Redis sorted set, ``ZRANGEBYSCORE``
with a limit), so its cost follows the number of due mailboxes, not the number of mailboxes. One
script claims them, unschedules what is no longer running, holds back orgs whose Salesforce API
budget is backing off (their mailboxes move to the end of the backoff) and tells which have a run
job already; one transaction (``Queue.enqueue_many``, WATCH on the jobs) enqueues the rest. That is
four Redis round trips per tick whatever the number due (plus one enqueue per failed run's leftover
job to replace). The interval itself (30 minutes, stretched to 60 and 120 after quiet runs) is set
by each run when it ends, from the slot's planned start (``backend.sync.cadence``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rq import cron

from backend.extensions import QUEUE_INTERACTIVE, Services, services
from backend.jobs.context import worker_app

log = logging.getLogger(__name__)

TICK_SECONDS = 60
# A claimed mailbox is not claimed again for this long; its run sets the real next time.
CLAIM_LEASE_SECONDS = 15 * 60
MAX_PER_TICK = 5000


def run_tick(svc: Services, now: float, limit: int = MAX_PER_TICK) -> dict[str, Any]:
    """Claim due mailboxes and enqueue their runs in a constant number of round trips; counts and timing."""
    from backend.jobs.sync import FINISHED_STATUSES, enqueue_background_runs, enqueue_sync, run_job_key_prefix

    started = time.perf_counter()
    claim = svc.store.schedule.claim_tick(now, CLAIM_LEASE_SECONDS, limit, run_job_key_prefix(), FINISHED_STATUSES)
    queued = enqueue_background_runs(claim.run)
    # A finished run's leftover job (a failed run's, kept a day) is deleted and replaced one by one:
    # only while it is still finished, as any enqueue does.
    replaced = sum(enqueue_sync(mid) for mid in claim.replace)
    queued += replaced
    skipped = len(claim.stopped) + len(claim.busy) + (len(claim.run) + len(claim.replace) - queued)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if claim.due:
        log.info("clock tick due=%d queued=%d held=%d skipped=%d replaced=%d ms=%d", claim.due, queued,
                 len(claim.held), skipped, replaced, elapsed_ms)
    return {"due": claim.due, "queued": queued, "held": len(claim.held), "skipped": skipped,
            "ms": round(elapsed_ms, 1)}


def tick() -> dict[str, Any]:
    """Enqueue a run for every mailbox that is due (RQ job; run by the clock every minute)."""
    with worker_app().app_context():
        return run_tick(services(), time.time())


# The tick goes to the interactive queue: in "sync" it would wait behind the very runs it enqueues
# (a backlog of background runs would starve the clock); "interactive" holds only short jobs.
TICK_QUEUE = QUEUE_INTERACTIVE
cron.register(tick, queue_name=TICK_QUEUE, interval=TICK_SECONDS, job_timeout=300, result_ttl=600)
