"""The clock: ``rq cron backend/jobs/schedule.py`` enqueues ``tick`` every minute.

A tick claims the mailboxes whose next run time has passed (a Redis sorted set), so its cost
follows the number of due mailboxes, not the number of mailboxes.
"""

from __future__ import annotations

import logging
import time

from rq import cron

from backend.extensions import QUEUE_SYNC, services
from backend.jobs.context import worker_app

log = logging.getLogger(__name__)

TICK_SECONDS = 60
# A claimed mailbox is not claimed again for this long; its run sets the real next time.
CLAIM_LEASE_SECONDS = 15 * 60
MAX_PER_TICK = 5000


def tick() -> dict[str, int]:
    """Enqueue a run for every mailbox that is due (RQ job; run by the clock every minute)."""
    from backend.jobs.sync import enqueue_sync

    with worker_app().app_context():
        store = services().store
        started = time.monotonic()
        due = store.schedule.claim_due(time.time(), CLAIM_LEASE_SECONDS, MAX_PER_TICK)
        queued = sum(1 for mid in due if enqueue_sync(mid))
        log.info("clock tick due=%d queued=%d ms=%d", len(due), queued, (time.monotonic() - started) * 1000)
        return {"due": len(due), "queued": queued}


cron.register(tick, queue_name=QUEUE_SYNC, interval=TICK_SECONDS, job_timeout=300, result_ttl=600)
