"""The sync job: one run for one mailbox, never two at once (a unique job id per mailbox).

* Unique job id ``sync-{mailbox id}`` (RQ 3.0 ``unique=True``): a second enqueue while a run is
  queued, scheduled for retry or running is refused, on any worker. RQ keeps the hash of a
  finished or failed job; such a leftover is history, not a run, and is replaced (only while it
  is still finished: two enqueuers racing must not delete each other's fresh job).
* Sync now overtakes: a background run still waiting in the ``sync`` queue (behind a backlog) or
  scheduled for a retry (up to an hour away) moves to the front of the ``interactive`` queue and
  runs as interactive. A run already started is left alone.
* Timeout: the run's deadline, ``SYNC_RUN_DEADLINE_SECONDS`` (RQ's job timeout enforces it); a run
  that overruns is stopped, recorded as ``timeout`` and retried.
* Retries: transient errors (mail server or Salesforce down, throttled) are retried with backoff
  that honours the service's Retry-After; permanent ones are not retried (the next scheduled run
  tries again). The job never swallows an error: RQ records every failure.
* Authentication failures count; after ``MAX_AUTH_FAILURES`` runs in a row sync is disabled
  (``disabled_error``) and one notification per incident goes out. A transient error never counts,
  nor does a refusal of our own app's credentials (``ServiceMisconfigured``: an expired client
  secret would otherwise disable every mailbox and email every user to reconnect, which cannot help).
"""

from __future__ import annotations

import logging
import math
import zlib
from datetime import UTC, datetime
from functools import partial
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus, get_current_job
from rq.queue import EnqueueData
from rq.registry import ScheduledJobRegistry

from backend.connectors.crm import ApiLimitExceeded
from backend.errors import AuthRevoked, ConnectorError, ServiceMisconfigured, Throttled
from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services
from backend.jobs.context import worker_app
from backend.jobs.failures import end_sessions_after_salesforce_refusal, org_access_failed, record_auth_failure
from backend.jobs.push import after_run
from backend.observability.logs import mailbox_hash
from backend.store.batch import Batch, Deferred

log = logging.getLogger(__name__)

# Transient failures (Salesforce or the mail server briefly down) are retried with backoff
# (SYNC_RETRY_SECONDS, default 30 s, 2 min, 10 min); after that the next scheduled run tries again.
# Never wait longer than this for a retry, whatever Retry-After says: the schedule takes over.
MAX_RETRY_WAIT_SECONDS = 3600
_FINISHED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED}
_FINISHED_RAW = {s.value.encode() for s in _FINISHED}

# Moves a job that is still waiting (in a queue list, or in a scheduled-retry registry) to the front
# of the interactive queue, atomically: a worker popping it, or the scheduler enqueuing it, at the
# same moment makes the LREM/ZREM find nothing, and nothing moves. KEYS: the waiting place, the
# interactive queue, the job hash. ARGV: "list" or "zset", job id, new data, new origin, status.
_PROMOTE = """
local removed
if ARGV[1] == 'list' then
  removed = redis.call('LREM', KEYS[1], 0, ARGV[2])
else
  removed = redis.call('ZREM', KEYS[1], ARGV[2])
end
if removed == 0 then
  return 0
end
redis.call('HSET', KEYS[3], 'data', ARGV[3], 'origin', ARGV[4], 'status', ARGV[5])
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
"""


# Which of KEYS exist (1 or 0 each): the re-check after WATCH, in one round trip.
_EXISTING = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('EXISTS', key) end
return out
"""
# Transactions of a tick's enqueue aborted by racing enqueuers before it falls back to one at a time.
BATCH_ATTEMPTS = 3
# RQ statuses after which a run job's hash is history, not a run (as strings, for the clock's script).
FINISHED_STATUSES = tuple(sorted(s.value for s in _FINISHED))


def job_id_for(mailbox_id: str) -> str:
    """The one job id a mailbox's run can have (RQ ids: letters, digits, '_' and '-')."""
    return f"sync-{mailbox_id}"


def job_status(mailbox_id: str) -> str | None:
    """The state of the mailbox's run job: "queued", "running", "retry_scheduled", or None."""
    try:
        job = Job.fetch(job_id_for(mailbox_id), connection=services().redis_raw)
    except NoSuchJobError:
        return None
    status = job.get_status(refresh=False)
    if status in (JobStatus.QUEUED, JobStatus.DEFERRED):
        return "queued"
    if status is JobStatus.STARTED:
        return "running"
    if status is JobStatus.SCHEDULED:
        return "retry_scheduled"
    return None


# A run job's stored status as the pane says it (see job_status).
_PANE_STATUS = {JobStatus.QUEUED.value: "queued", JobStatus.DEFERRED.value: "queued",
                JobStatus.STARTED.value: "running", JobStatus.SCHEDULED.value: "retry_scheduled"}


def job_status_in(batch: Batch, mailbox_id: str) -> Deferred[str | None]:
    """:func:`job_status`, read with a store batch (only the job hash's ``status`` field, which is text)."""
    batch.pipe.hget(Job.key_for(job_id_for(mailbox_id)), "status")
    return batch.defer(lambda status: _PANE_STATUS.get(status) if status else None)


def retry_policy() -> Retry:
    """RQ retries for a run, from SYNC_RETRY_SECONDS."""
    intervals = [int(v) for v in services().settings.SYNC_RETRY_SECONDS]
    return Retry(max=len(intervals), interval=intervals)


def delete_if_finished(job_id: str) -> bool:
    """Delete a finished (or failed) job's leftover hash; False when the job is no longer finished.

    WATCH on the job hash makes the check and the delete one step: another enqueuer that replaced
    the leftover with a fresh job meanwhile (maybe already running) keeps it.
    """
    connection = services().redis_raw
    with connection.pipeline() as pipe:
        while True:
            try:
                job = Job.fetch(job_id, connection=connection)
                pipe.watch(job.key)
                status = pipe.hget(job.key, "status")
                if status is None:
                    pipe.unwatch()
                    return True  # gone meanwhile: nothing to replace
                if status not in _FINISHED_RAW:
                    pipe.unwatch()
                    return False
                pipe.multi()
                job.delete(pipeline=pipe)
                pipe.execute()
                return True
            except NoSuchJobError:
                return True
            except redis.WatchError:
                continue


def promote(job_id: str) -> bool:
    """Move a waiting background run to the front of the interactive queue, as an interactive run.

    Waiting means queued in ``sync`` (behind a backlog) or scheduled for a retry; True when moved.
    """
    svc = services()
    connection = svc.redis_raw
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    interactive = svc.queue(QUEUE_INTERACTIVE)
    if status is JobStatus.QUEUED and job.origin != QUEUE_INTERACTIVE:
        kind, place = "list", svc.queue(job.origin).key if job.origin in svc.queues else f"rq:queue:{job.origin}"
    elif status is JobStatus.SCHEDULED:
        kind, place = "zset", ScheduledJobRegistry(job.origin, connection=connection).key
    else:
        return False  # already in front, running, or gone
    job.kwargs = {**job.kwargs, "interactive": True}
    moved = connection.eval(_PROMOTE, 3, place, interactive.key, job.key, kind, job.id, zlib.compress(job.data),
                            QUEUE_INTERACTIVE, JobStatus.QUEUED.value)
    if moved:
        log.info("sync now: run moved to the front of the interactive queue job=%s was=%s", job.id, status.value)
    return bool(moved)


def run_job_data(mailbox_id: str, interactive: bool, retry: Retry) -> EnqueueData:
    """What a run's job is made of (``Queue.prepare_data``): the one definition every enqueue uses."""
    return Queue.prepare_data(
        sync_mailbox,
        args=(mailbox_id,),
        kwargs={"interactive": interactive},
        job_id=job_id_for(mailbox_id),
        timeout=services().settings.SYNC_RUN_DEADLINE_SECONDS,
        result_ttl=0,
        failure_ttl=24 * 3600,
        retry=retry,
        # Not the id: RQ logs the description and stores it in clear (the id is in the job's packed args).
        description=f"sync mailbox={mailbox_hash(mailbox_id)}",
    )


def run_job_key_prefix() -> str:
    """The prefix of a run job's hash key: the prefix plus a mailbox id is that mailbox's run job."""
    return Job.key_for(job_id_for(""))


def enqueue_background_runs(mailbox_ids: list[str]) -> int:
    """Queue background runs for mailboxes that had no run job, all in one transaction; how many were queued.

    ``enqueue_many`` has no ``unique``: uniqueness comes from WATCH on the jobs' hashes, checked
    again (one script) after the WATCH. A mailbox whose job appeared meanwhile (someone's Sync now)
    is left to that job; an enqueuer racing the transaction aborts it, and it is tried again. Four
    round trips whatever the number of mailboxes; after repeated races, one enqueue each.
    """
    if not mailbox_ids:
        return 0
    svc = services()
    queue = svc.queue(QUEUE_SYNC)
    retry = retry_policy()
    keys = [Job.key_for(job_id_for(mid)) for mid in mailbox_ids]
    for _ in range(BATCH_ATTEMPTS):
        with svc.redis_raw.pipeline() as pipe:
            try:
                pipe.watch(*keys)
                present = pipe.eval(_EXISTING, len(keys), *keys)
                fresh = [mid for mid, there in zip(mailbox_ids, present, strict=True) if not there]
                pipe.multi()
                queue.enqueue_many([run_job_data(mid, False, retry) for mid in fresh], pipeline=pipe)
                pipe.execute()
                return len(fresh)
            except redis.WatchError:
                continue
    return sum(enqueue_sync(mid) for mid in mailbox_ids)


def enqueue_sync(mailbox_id: str, interactive: bool = False, at: float | None = None) -> bool:
    """Queue a run unless one is already queued or running; True when this call queued (or promoted) it.

    An interactive enqueue (Sync now) finding a background run still waiting moves that run to the
    front of the interactive queue instead of leaving the person waiting behind the backlog. ``at``
    (epoch seconds) schedules a background run for then (a push notification's debounced run).
    """
    svc = services()
    queue = svc.queue(QUEUE_INTERACTIVE if interactive else QUEUE_SYNC)
    job_id = job_id_for(mailbox_id)
    retry = retry_policy()
    for _ in range(3):
        try:
            data = run_job_data(mailbox_id, interactive, retry)
            enqueue = queue.enqueue if at is None else partial(queue.enqueue_at, datetime.fromtimestamp(at, UTC))
            enqueue(
                data.func,
                args=data.args,
                kwargs=data.kwargs,
                job_id=data.job_id,
                unique=True,
                job_timeout=data.timeout,
                result_ttl=data.result_ttl,
                failure_ttl=data.failure_ttl,
                retry=data.retry,
                description=data.description,
            )
            return True
        except DuplicateJobError:
            try:
                job = Job.fetch(job_id, connection=svc.redis_raw)
                status = job.get_status(refresh=True)
            except (NoSuchJobError, InvalidJobOperation):
                continue  # the run ended and its job went away between the refusal and this look: queue again
            if status in _FINISHED:
                # A finished or failed run leaves its job hash behind; it is history, not a run.
                # Deleted only if still finished: a racing enqueuer's fresh job stays.
                if delete_if_finished(job_id):
                    continue
                return False
            return promote(job_id) if interactive else False
    return False


def _set_retry(error: BaseException) -> None:
    """Tell RQ how to retry this failure: not at all for permanent errors, honouring Retry-After otherwise."""
    job = get_current_job()
    if job is None:
        return
    if isinstance(error, ApiLimitExceeded | ServiceMisconfigured) or (
            isinstance(error, ConnectorError) and not error.transient):
        # Retrying cannot help: auth needs the person; the API budget backs off for the whole org;
        # our own app credentials need an administrator (every mailbox retrying would only hammer
        # the identity provider; the next scheduled run tries again, and nothing is counted).
        job.retries_left = 0
        return
    if isinstance(error, Throttled):
        # Rounded up: a retry a fraction of a second early meets the mailbox's gate still holding
        # off (the hint left after the wait began) and fails again, spending a retry for nothing.
        wait = math.ceil(min(MAX_RETRY_WAIT_SECONDS, max(1.0, error.retry_after)))
        intervals = job.retry_intervals or [int(v) for v in services().settings.SYNC_RETRY_SECONDS]
        job.retry_intervals = [max(wait, int(i)) for i in intervals]


def sync_mailbox(mailbox_id: str, interactive: bool = False) -> dict[str, Any]:
    """RQ job: run sync once for ``mailbox_id`` (errors propagate so RQ retries or records them)."""
    with worker_app().app_context():
        # Every change so far is this run's to read: the next push notification plans another run.
        services().store.push.run_started(mailbox_id)
        try:
            result = services().engine.run(mailbox_id, interactive=interactive)
        except (AuthRevoked, ServiceMisconfigured) as exc:
            if org_access_failed(mailbox_id, exc):
                # The org's access, not this person's: no auth failure counted, no retry.
                _set_retry(AuthRevoked())
                raise
            if not isinstance(exc, AuthRevoked):
                _set_retry(exc)
                raise
            source = str(getattr(exc, "source", "mailbox"))
            if source == "salesforce":
                end_sessions_after_salesforce_refusal(mailbox_id, exc)
            record_auth_failure(mailbox_id, exc, source)
            _set_retry(exc)
            raise
        except Exception as exc:
            _set_retry(exc)
            raise
        try:
            after_run(mailbox_id)
        except Exception:
            # The run itself is done and recorded: failing the job would run it again. The next run
            # asks for push again (after_run is idempotent), so this is logged, not retried here.
            log.exception("push: ensure not queued after the run mid=%s", mailbox_id)
        return result
