"""The sync job's error handling, run by RQ's in-process SimpleWorker (the real worker is in the e2e tests)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from backend.errors import Throttled, Unavailable
from backend.extensions import QUEUE_INTERACTIVE, QUEUE_NOTIFY, QUEUE_SYNC, services
from backend.jobs.sync import enqueue_sync, job_id_for, job_status
from backend.store.mailboxes import SyncState
from tests.helpers import run_queued
from tests.sfhelpers import SalesforceUser
from tests.sync.items import ListMailbox, mail


def test_a_run_returns_its_record(sf: SalesforceUser, box: ListMailbox) -> None:
    sf.data.add_contact("bob@customer.example")
    box.add("inbox", mail())
    assert enqueue_sync(sf.uid, interactive=True)
    assert job_status(sf.uid) == "queued"
    timeout = Job.fetch(job_id_for(sf.uid), connection=services().redis_raw).timeout
    assert timeout == services().settings.SYNC_RUN_DEADLINE_SECONDS == 1200
    run_queued()
    assert job_status(sf.uid) is None  # result_ttl 0: nothing left behind
    mailbox = services().store.mailboxes.get(sf.uid)
    assert mailbox is not None and mailbox.last_run is not None
    assert mailbox.last_run["counts"]["written"] == 1


def test_throttling_is_retried_after_retry_after(sf: SalesforceUser, box: ListMailbox) -> None:
    box.error = Throttled("busy", retry_after=300)
    assert enqueue_sync(sf.uid)
    before = time.time()
    run_queued()
    job = Job.fetch(job_id_for(sf.uid), connection=services().redis_raw)
    assert job.get_status() is JobStatus.SCHEDULED and job.retries_left == 2
    registry = ScheduledJobRegistry(QUEUE_SYNC, connection=services().redis_raw)
    scheduled = registry.get_scheduled_time(job.id).timestamp()
    assert before + 299 <= scheduled <= time.time() + 301
    assert job_status(sf.uid) == "retry_scheduled"


def test_a_fractional_retry_after_is_rounded_up_not_down(sf: SalesforceUser, box: ListMailbox) -> None:
    # A mailbox gate's hold-off is what is left of a Retry-After: rarely whole seconds. Rounded
    # down, the retry comes before the hold-off ends and is refused again, costing an attempt.
    box.error = Throttled("busy", retry_after=300.2)
    assert enqueue_sync(sf.uid)
    run_queued()
    job = Job.fetch(job_id_for(sf.uid), connection=services().redis_raw)
    assert job.retry_intervals == [301, 301, 600]


def test_transient_errors_never_count_as_auth_failures(sf: SalesforceUser, box: ListMailbox) -> None:
    box.error = Unavailable("down")
    for _ in range(8):
        Job.fetch(job_id_for(sf.uid), connection=services().redis_raw).delete() if job_status(sf.uid) else None
        assert enqueue_sync(sf.uid, interactive=True)
        run_queued()
    mailbox = services().store.mailboxes.get(sf.uid)
    assert mailbox is not None and mailbox.state is SyncState.RUNNING and mailbox.auth_failures == 0
    assert mailbox.last_run is not None and mailbox.last_run["error"]["code"] == "unavailable"


def test_auth_failures_are_not_retried_and_disable_after_the_limit(sf: SalesforceUser, box: ListMailbox) -> None:
    box.revoked = True
    limit = services().settings.MAX_AUTH_FAILURES
    for attempt in range(1, limit + 1):
        assert enqueue_sync(sf.uid, interactive=True)
        run_queued()
        job = Job.fetch(job_id_for(sf.uid), connection=services().redis_raw)
        assert job.get_status() is JobStatus.FAILED and job.retries_left == 0  # never retried
        mailbox = services().store.mailboxes.get(sf.uid)
        assert mailbox is not None and mailbox.auth_failures == attempt
    assert mailbox is not None and mailbox.state is SyncState.DISABLED_ERROR
    assert services().store.schedule.next_of(sf.uid) is None
    notices = services().queue(QUEUE_NOTIFY).job_ids
    assert len(notices) == 1 and notices[0].startswith(f"notify-{sf.uid}-")
    # Disabled: a run does nothing and no second notice is queued.
    assert enqueue_sync(sf.uid, interactive=True)
    run_queued()
    assert services().queue(QUEUE_NOTIFY).job_ids == notices
    assert box.requests == limit
    run_queued(QUEUE_NOTIFY)  # no SMTP_URL in this app: the notice is logged, not sent
    assert services().queue(QUEUE_NOTIFY).job_ids == []


def test_a_good_run_resets_the_failure_streak(sf: SalesforceUser, box: ListMailbox) -> None:
    box.revoked = True
    for _ in range(2):
        enqueue_sync(sf.uid, interactive=True)
        run_queued()
    box.revoked = False
    enqueue_sync(sf.uid, interactive=True)
    run_queued()
    mailbox = services().store.mailboxes.get(sf.uid)
    assert mailbox is not None and mailbox.auth_failures == 0 and mailbox.error is None


def test_sync_now_brings_a_scheduled_retry_forward(sf: SalesforceUser, box: ListMailbox) -> None:
    sf.data.add_contact("bob@customer.example")
    box.add("inbox", mail())
    box.error = Throttled("busy", retry_after=3000)  # the background run is told to come back in 50 min
    assert enqueue_sync(sf.uid)
    run_queued()
    assert job_status(sf.uid) == "retry_scheduled"
    box.error = None
    assert enqueue_sync(sf.uid, interactive=True) is True  # Sync now
    assert job_status(sf.uid) == "queued"
    registry = ScheduledJobRegistry(QUEUE_SYNC, connection=services().redis_raw)
    assert registry.get_job_ids() == []
    assert services().queue(QUEUE_INTERACTIVE).job_ids == [job_id_for(sf.uid)]
    run_queued(QUEUE_INTERACTIVE)
    mailbox = services().store.mailboxes.get(sf.uid)
    assert mailbox is not None and mailbox.last_run is not None
    assert mailbox.last_run["status"] == "ok" and mailbox.last_run["trigger"] == "interactive"
    assert mailbox.last_run["counts"]["written"] == 1
    assert job_status(sf.uid) is None


def test_a_run_that_takes_too_long_is_stopped_and_says_so(sf: SalesforceUser, box: ListMailbox,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    svc = services()
    # The run's deadline from the settings (a write timeout under it, as the start check demands).
    monkeypatch.setattr(svc, "settings", replace(svc.settings, SYNC_RUN_DEADLINE_SECONDS=2,
                                                 SALESFORCE_WRITE_TIMEOUT_SECONDS=1))
    box.delay = 4.0
    box.add("inbox", mail())
    assert enqueue_sync(sf.uid)
    run_queued()
    mailbox = services().store.mailboxes.get(sf.uid)
    assert mailbox is not None and mailbox.last_run is not None
    assert mailbox.last_run["status"] == "error"
    assert mailbox.last_run["error"]["code"] == "timeout"
    assert "took too long" in mailbox.last_run["error"]["message"]
    assert mailbox.state is SyncState.RUNNING  # a slow run never disables sync
    assert services().store.mailboxes.cursors(sf.uid) == {}  # nothing was saved past what was written


def test_a_run_whose_job_goes_away_while_it_is_enqueued_again_is_queued_afresh(
        sf: SalesforceUser, monkeypatch: pytest.MonkeyPatch) -> None:
    # The race the real day met: the enqueue is refused (the job exists), then the run ends and its
    # job (result_ttl 0) is deleted before the enqueuer reads its status.
    assert enqueue_sync(sf.uid)
    from backend.jobs import sync as sync_jobs

    real_fetch = Job.fetch
    vanished: list[str] = []

    def fetch_then_vanish(job_id: str, connection: Any = None, serializer: Any = None) -> Job:
        job = real_fetch(job_id, connection=connection, serializer=serializer)
        if not vanished:
            vanished.append(job_id)
            job.delete()  # the run finished meanwhile
        return job

    monkeypatch.setattr(sync_jobs.Job, "fetch", staticmethod(fetch_then_vanish))
    assert enqueue_sync(sf.uid) is True
    assert vanished == [job_id_for(sf.uid)]
    assert job_status(sf.uid) == "queued"
