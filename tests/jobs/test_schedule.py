"""The clock: a tick claims only what is due, skips stopped mailboxes and holds back orgs in backoff."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from flask import Flask
from rq.job import Job, JobStatus

from backend.extensions import QUEUE_SYNC, services
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
    assert enqueue_sync("u1", interactive=True) is False  # one run per mailbox, whatever the queue
    job = Job.fetch(job_id_for("u1"), connection=services().redis_raw)
    job.set_status(JobStatus.FAILED)
    # A failed run's leftover hash is history: the next enqueue replaces it.
    assert enqueue_sync("u1", interactive=True) is True
