"""Push jobs: make, renew, recreate and delete a mailbox's subscriptions; plan a notification's run.

* ``ensure_push`` after a run of a mailbox that should have subscriptions and lacks some (so
  activation, resume, enable and reconnect, which all start a run, turn push on); then one more
  delta run, for what arrived between that run's read and the subscriptions.
* ``push_check`` (the clock, every ``PUSH_CHECK_SECONDS``): renews what is past half its lifetime,
  and deletes the subscriptions of mailboxes no longer running (pause, deactivate, disable).
* ``plan_push_run`` (the webhook): a burst of notifications becomes one run, at most one a minute
  (``store.push.plan_run``); the run is the normal delta run, scheduled on the sync job's id.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rq import get_current_job
from rq.exceptions import DuplicateJobError

from backend.errors import ConnectorError
from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services
from backend.jobs.context import worker_app
from backend.observability.logs import mailbox_hash
from backend.sync.push import PushManager, kinds_for, push_wanted

log = logging.getLogger(__name__)

# A mailbox whose renewal job was just queued is not looked at again for this long.
RENEW_LEASE_SECONDS = 300
# At most one notification-triggered run per mailbox per minute.
MIN_GAP_SECONDS = 60
JOB_TIMEOUT = 120
# A renewal job renews what was asked for during it this many times more, then leaves it to the clock.
MAX_RENEW_ROUNDS = 3
# After push was refused for a mailbox, the runs that follow do not ask again for this long.
ENSURE_RETRY_SECONDS = 3600


def manager() -> PushManager:
    """The push manager over the current app's store, settings and clients."""
    svc = services()
    return PushManager(svc.store, svc.settings, svc.clients)


def enqueue_push_job(func: Any, mid: str, name: str, *args: Any) -> bool:
    """Queue a push job for a mailbox unless one of the same name is queued or running."""
    try:
        services().queue(QUEUE_SYNC).enqueue(
            func, args=(mid, *args), job_id=f"push-{name}-{mid}", unique=True, job_timeout=JOB_TIMEOUT,
            result_ttl=0, failure_ttl=24 * 3600, description=f"push {name} mailbox={mailbox_hash(mid)}")
        return True
    except DuplicateJobError:
        from backend.jobs.sync import delete_if_finished

        # A finished job's leftover hash is history: replace it (only while still finished).
        if delete_if_finished(f"push-{name}-{mid}"):
            return enqueue_push_job(func, mid, name, *args)
        return False


def plan_push_run(mid: str, now: float | None = None) -> bool:
    """A notification for ``mid`` arrived: plan its debounced run; True when this call planned one."""
    from backend.jobs.sync import enqueue_sync, job_status

    svc = services()
    now = time.time() if now is None else now
    at = svc.store.push.plan_run(mid, now, svc.settings.PUSH_DEBOUNCE_SECONDS, MIN_GAP_SECONDS)
    if at is None:
        return False  # a run is planned already: it will read this change too
    if enqueue_sync(mid, at=at):
        return True
    if job_status(mid) == "running":
        # The run in progress may have read its folders already: plan again after it. A replan
        # job finding the run still going plans the next under the other of two ids (its own is
        # taken while it runs, and a duplicate would end the chain until the next poll).
        replan_id = f"push-replan-{mid}"
        current = get_current_job()
        if current is not None and current.id == replan_id:
            replan_id += "-again"
        try:
            svc.queue(QUEUE_INTERACTIVE).enqueue_at(_moment(at), replan_push_run, args=(mid,),
                                                    job_id=replan_id, unique=True, result_ttl=0,
                                                    description=f"push replan mailbox={mailbox_hash(mid)}")
        except DuplicateJobError:
            pass  # a replan is planned already: it reads this change too
    return False


def _moment(at: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC)


def replan_push_run(mid: str) -> bool:
    """RQ job: plan a notification's run again (the mailbox was running when it came)."""
    with worker_app().app_context():
        services().store.push.run_started(mid)
        return plan_push_run(mid)


def after_run(mid: str) -> bool:
    """After a run: queue ``ensure_push`` when the mailbox should have subscriptions and lacks some."""
    svc = services()
    mailbox = svc.store.mailboxes.get(mid)
    if not push_wanted(svc.settings, mailbox):
        return False
    assert mailbox is not None
    health = svc.store.push.health(mid)
    if health is not None and not health.on and time.time() - health.since < ENSURE_RETRY_SECONDS:
        return False  # refused lately (consent, handshake): not again at every run
    if len(svc.store.push.of(mid)) >= len(kinds_for(svc.settings, mailbox.provider)) and health is not None \
            and health.on:
        return False
    return enqueue_push_job(ensure_push, mid, "ensure")


def ensure_push(mid: str, recreate: tuple[str, ...] = ()) -> int:
    """RQ job: create the mailbox's missing subscriptions (and ``recreate``), then one delta run."""
    with worker_app().app_context():
        made = manager().ensure(mid, frozenset(recreate))
        if made:
            from backend.jobs.sync import enqueue_sync

            # Not debounced: what arrived while no subscription watched is read now.
            enqueue_sync(mid)
        return made


def renew_push(mid: str, now_too: tuple[str, ...] = ()) -> int:
    """RQ job: renew the mailbox's subscriptions past half their lifetime (and ``now_too``, whatever their age).

    Those Graph asked for while this job was queued or running (``store.push.ask_renewal``) are
    renewed too: their requests could not queue a job of their own under its unique id.
    """
    with worker_app().app_context():
        push = services().store.push
        renewed = manager().renew(mid, only=frozenset(now_too) | push.take_renewals(mid))
        # Asked for while the renewal went on: renewed now, the last step a look at the set, so a
        # request after it finds the mailbox due at the clock's next check (``ask_renewal``).
        for _ in range(MAX_RENEW_ROUNDS):
            more = push.take_renewals(mid)
            if not more:
                return renewed
            renewed += manager().renew(mid, only=more)
        left = push.take_renewals(mid)
        if left:
            push.ask_renewal(mid, left, time.time())  # the clock's next check queues another job
        return renewed


def drop_push(mid: str) -> int:
    """RQ job: delete the mailbox's subscriptions (paused, deactivated, disabled)."""
    with worker_app().app_context():
        return manager().drop(mid)


def drop_push_now(mid: str) -> int:
    """Delete the subscriptions while the credentials still exist (Deactivate deletes them next).

    Best effort, like revoking a Google token there: on failure the subscriptions are forgotten
    here, Graph ends them at expiry, and their notifications are refused as unknown meanwhile.
    """
    try:
        return manager().drop(mid)
    except ConnectorError as exc:
        log.warning("push: subscriptions not deleted at Graph mid=%s error=%s", mid, type(exc).__name__)
        store = services().store
        for sub in store.push.of(mid):
            store.push.forget(mid, sub.id)
        store.push.clear_health(mid)
        return 0


def run_push_check(now: float) -> dict[str, int]:
    """Queue renewals that are due and the deletion of subscriptions of mailboxes no longer running."""
    svc = services()
    store = svc.store
    renew = drop = 0
    subscribed = store.push.subscribed()
    states = store.mailboxes.due_details(subscribed) if subscribed else []
    stopped = {mid for mid, (state, _) in zip(subscribed, states, strict=True) if state != "running"}
    for mid in stopped:
        drop += int(enqueue_push_job(drop_push, mid, "drop"))
    for mid in store.push.due_for_renewal(now):
        if mid in stopped:
            continue
        store.push.postpone(mid, now + RENEW_LEASE_SECONDS)
        renew += int(enqueue_push_job(renew_push, mid, "renew"))
    if renew or drop:
        log.info("push check renew=%d drop=%d", renew, drop)
    return {"renew": renew, "drop": drop}


def push_check() -> dict[str, int]:
    """RQ job (the clock): renew subscriptions in time; delete those of stopped mailboxes."""
    with worker_app().app_context():
        return run_push_check(time.time())
