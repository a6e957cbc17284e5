"""The sync job: one run for one mailbox, never two at once (a unique job id per mailbox)."""

from __future__ import annotations

import logging

from rq import Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services
from backend.jobs.context import worker_app

log = logging.getLogger(__name__)

# A run reads at most a few thousand items; anything longer is stuck, not slow.
JOB_TIMEOUT_SECONDS = 20 * 60
# Transient failures (Salesforce or the mail server briefly down) are retried with backoff;
# after that the next scheduled run tries again.
RETRY = Retry(max=3, interval=[30, 120, 600])
_FINISHED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED}


def job_id_for(mailbox_id: str) -> str:
    """The one job id a mailbox's run can have (RQ ids: letters, digits, '_' and '-')."""
    return f"sync-{mailbox_id}"


def enqueue_sync(mailbox_id: str, interactive: bool = False) -> bool:
    """Queue a run unless one is already queued or running; True when this call queued it."""
    svc = services()
    queue = svc.queue(QUEUE_INTERACTIVE if interactive else QUEUE_SYNC)
    job_id = job_id_for(mailbox_id)
    for _ in range(2):
        try:
            queue.enqueue(
                sync_mailbox,
                mailbox_id,
                job_id=job_id,
                unique=True,
                job_timeout=JOB_TIMEOUT_SECONDS,
                result_ttl=0,
                failure_ttl=24 * 3600,
                retry=RETRY,
                description=f"sync {mailbox_id}",
            )
            return True
        except DuplicateJobError:
            try:
                job = Job.fetch(job_id, connection=svc.redis_raw)
            except NoSuchJobError:
                continue
            if job.get_status(refresh=True) in _FINISHED:
                # A finished or failed run leaves its job hash behind; it is history, not a run.
                job.delete()
                continue
            return False
    return False


def sync_mailbox(mailbox_id: str) -> dict[str, object]:
    """RQ job: run sync once for ``mailbox_id`` (errors propagate so RQ retries or records them)."""
    from backend.sync.engine import run_mailbox

    with worker_app().app_context():
        return run_mailbox(mailbox_id)
