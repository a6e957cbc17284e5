"""The clock: ``rq cron backend/jobs/schedule.py`` enqueues ``tick`` every minute.

A tick claims the mailboxes whose next run time has passed (a Redis sorted set, ``ZRANGEBYSCORE``
with a limit), so its cost follows the number of due mailboxes, not the number of mailboxes. For
the claimed ones it reads state and org in one round trip, skips what is no longer running, holds
back orgs whose Salesforce API budget is backing off (their mailboxes move to the end of the
backoff), and enqueues a background run for the rest. The interval itself (30 minutes, stretched
to 60 and 120 after quiet runs) is set by each run when it ends (``backend.sync.engine``).
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
    """Claim due mailboxes and enqueue their runs; returns counts and timing."""
    from backend.jobs.sync import enqueue_sync

    store = svc.store
    started = time.perf_counter()
    due = store.schedule.claim_due(now, CLAIM_LEASE_SECONDS, limit)
    details = store.mailboxes.due_details(due) if due else []
    orgs = sorted({org for _, org in details if org})
    backoff = store.orgs.backoff_until(orgs) if orgs else {}
    queued = skipped = held = 0
    for mid, (state, org) in zip(due, details, strict=True):
        if state != "running":
            # Paused, deactivated or disabled since it was scheduled: it has no next run.
            store.schedule.remove(mid)
            skipped += 1
        elif backoff.get(org, 0.0) > now:
            store.schedule.set_next(mid, backoff[org])
            held += 1
        elif enqueue_sync(mid):
            queued += 1
        else:
            skipped += 1  # already queued or running
    elapsed_ms = (time.perf_counter() - started) * 1000
    if due:
        log.info("clock tick due=%d queued=%d held=%d skipped=%d ms=%d", len(due), queued, held, skipped,
                 elapsed_ms)
    return {"due": len(due), "queued": queued, "held": held, "skipped": skipped, "ms": round(elapsed_ms, 1)}


def tick() -> dict[str, Any]:
    """Enqueue a run for every mailbox that is due (RQ job; run by the clock every minute)."""
    with worker_app().app_context():
        return run_tick(services(), time.time())


# The tick goes to the interactive queue: in "sync" it would wait behind the very runs it enqueues
# (a backlog of background runs would starve the clock); "interactive" holds only short jobs.
TICK_QUEUE = QUEUE_INTERACTIVE
cron.register(tick, queue_name=TICK_QUEUE, interval=TICK_SECONDS, job_timeout=300, result_ttl=600)
