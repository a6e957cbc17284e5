"""The clock: a tick claims only what is due, skips stopped mailboxes and holds back orgs in backoff."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from flask import Flask
from rq.job import Job, JobStatus

from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services
from backend.jobs.schedule import CLAIM_LEASE_SECONDS, run_tick
from backend.jobs.sync import job_id_for
from backend.store.users import User


@pytest.fixture
def ctx(app: Flask) -> Iterator[None]:
    """An app context."""
    with app.app_context():
        yield


def make_mailbox(uid: str, org: str = "00DORG", running: bool = True, when: float | None = None) -> None:
    """A user with a (running) sync mailbox scheduled at ``when``."""
    store = services().store
    store.users.save(User(id=uid, org_id=org, sf_user_id=f"005{uid}"))
    store.mailboxes.ensure(uid, org)
    if running:
        store.mailboxes.activate(uid, "exchange", f"{uid}@acme.example")
    store.schedule.set_next(uid, time.time() + 3600 if when is None else when)


def queued_ids() -> list[str]:
    """Job ids waiting in the background queue."""
    return services().queue(QUEUE_SYNC).job_ids


def test_tick_enqueues_only_due_mailboxes(ctx: None) -> None:
    now = time.time()
    store = services().store
    # Many mailboxes, few due: the tick touches only the due ones.
    with store.redis.pipeline() as pipe:
        for i in range(3000):
            pipe.zadd(store.schedule.key, {f"later{i}": now + 600 + i})
        pipe.execute()
    for i in range(3):
        make_mailbox(f"due{i}", when=now - 10)
    result = run_tick(services(), now)
    assert result["due"] == 3 and result["queued"] == 3
    assert sorted(queued_ids()) == sorted(job_id_for(f"due{i}") for i in range(3))
    # Claimed mailboxes are leased, not claimed again by the next tick.
    assert store.schedule.next_of("due0") == pytest.approx(now + CLAIM_LEASE_SECONDS)
    assert run_tick(services(), now + 60)["due"] == 0
    assert store.schedule.next_of("later0") == pytest.approx(now + 600)
    assert store.schedule.count() == 3003


def test_tick_removes_stopped_mailboxes_and_skips_queued_ones(ctx: None) -> None:
    now = time.time()
    make_mailbox("paused", when=now - 1)
    services().store.mailboxes.pause("paused")
    make_mailbox("never", running=False, when=now - 1)
    make_mailbox("busy", when=now - 1)
    from backend.jobs.sync import enqueue_sync

    assert enqueue_sync("busy")
    result = run_tick(services(), now)
    assert result == {"due": 3, "queued": 0, "held": 0, "skipped": 3, "ms": result["ms"]}
    assert services().store.schedule.next_of("paused") is None
    assert services().store.schedule.next_of("never") is None
    assert queued_ids() == [job_id_for("busy")]


def test_tick_holds_back_orgs_in_api_backoff(ctx: None) -> None:
    now = time.time()
    make_mailbox("held", org="00DHOT", when=now - 1)
    make_mailbox("free", org="00DCOOL", when=now - 1)
    services().store.orgs.update("00DHOT", api_backoff_until=now + 1800, api_backoff_level=1)
    result = run_tick(services(), now)
    assert result["queued"] == 1 and result["held"] == 1
    assert queued_ids() == [job_id_for("free")]
    assert services().store.schedule.next_of("held") == pytest.approx(now + 1800)


def test_enqueue_is_unique_per_mailbox_and_replaces_history(ctx: None) -> None:
    from backend.jobs.sync import enqueue_sync

    make_mailbox("u1", when=time.time() - 1)
    assert enqueue_sync("u1") is True
    assert enqueue_sync("u1") is False
    # One run per mailbox, whatever the queue: Sync now moves the waiting run up (it does not add one).
    assert enqueue_sync("u1", interactive=True) is True
    assert enqueue_sync("u1", interactive=True) is False
    assert queued_ids() == [] and services().queue(QUEUE_INTERACTIVE).job_ids == [job_id_for("u1")]
    job = Job.fetch(job_id_for("u1"), connection=services().redis_raw)
    job.set_status(JobStatus.FAILED)
    # A failed run's leftover hash is history: the next enqueue replaces it.
    assert enqueue_sync("u1", interactive=True) is True


def test_sync_now_overtakes_a_background_run_waiting_behind_a_backlog(ctx: None) -> None:
    from backend.jobs.sync import enqueue_sync

    now = time.time()
    for i in range(5):
        make_mailbox(f"busy{i}", when=now - 1)
        assert enqueue_sync(f"busy{i}")
    make_mailbox("me", when=now - 1)
    assert enqueue_sync("me")  # the clock queued my background run behind the backlog
    make_mailbox("other", when=now - 1)
    assert enqueue_sync("other", interactive=True)  # someone else's Sync now, already waiting
    assert queued_ids()[-1] == job_id_for("me")
    assert enqueue_sync("me", interactive=True) is True  # Sync now
    assert job_id_for("me") not in queued_ids() and len(queued_ids()) == 5
    assert services().queue(QUEUE_INTERACTIVE).job_ids == [job_id_for("me"), job_id_for("other")]
    job = Job.fetch(job_id_for("me"), connection=services().redis_raw)
    assert job.get_status() is JobStatus.QUEUED and job.origin == QUEUE_INTERACTIVE
    assert job.kwargs == {"interactive": True} and job.args == ("me",)  # runs as an interactive run


def test_sync_now_leaves_a_started_run_alone(ctx: None) -> None:
    from backend.jobs.sync import enqueue_sync

    make_mailbox("me", when=time.time() - 1)
    assert enqueue_sync("me")
    services().redis_raw.lrem(services().queue(QUEUE_SYNC).key, 0, job_id_for("me"))  # a worker took it
    job = Job.fetch(job_id_for("me"), connection=services().redis_raw)
    job.set_status(JobStatus.STARTED)
    assert enqueue_sync("me", interactive=True) is False
    assert services().queue(QUEUE_INTERACTIVE).job_ids == [] and queued_ids() == []


def test_two_enqueuers_replacing_one_finished_run_never_delete_each_others_fresh_job(
        ctx: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.jobs import sync as jobs_sync

    make_mailbox("u1", when=time.time() - 1)
    assert jobs_sync.enqueue_sync("u1")
    Job.fetch(job_id_for("u1"), connection=services().redis_raw).set_status(JobStatus.FINISHED)
    original_delete = Job.delete
    results: list[bool] = []

    def delete_after_a_rival(self: Job, *args: object, **kwargs: object) -> None:
        # Both enqueuers saw the finished leftover. The rival replaces it with its fresh job first
        # (which a worker may already be running); then this one's delete goes ahead.
        monkeypatch.setattr(Job, "delete", original_delete)
        results.append(jobs_sync.enqueue_sync("u1"))
        original_delete(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Job, "delete", delete_after_a_rival)
    results.append(jobs_sync.enqueue_sync("u1"))
    # The rival queued the one run; the late enqueuer neither deleted it nor queued a second.
    assert results == [True, False]
    job = Job.fetch(job_id_for("u1"), connection=services().redis_raw)
    assert job.get_status() is JobStatus.QUEUED
    assert queued_ids() == [job_id_for("u1")]


def test_the_clock_tick_is_not_queued_behind_background_runs() -> None:
    from rq.cron import CronScheduler

    from backend.extensions import QUEUE_INTERACTIVE as INTERACTIVE

    scheduler = CronScheduler(connection=None)  # type: ignore[arg-type]
    scheduler.load_config_from_file("backend.jobs.schedule")
    ((job),) = [j for j in scheduler._cron_jobs if j.func_name.endswith(".tick")]
    assert job.queue_name == INTERACTIVE
