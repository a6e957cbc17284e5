"""The clock tick in a constant number of Redis round trips, with every guarantee of the one-by-one tick kept."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask
from rq.job import Job, JobStatus

from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services
from backend.jobs import sync as jobs_sync
from backend.jobs.schedule import CLAIM_LEASE_SECONDS, run_tick
from backend.jobs.sync import enqueue_sync, job_id_for
from sandbox.redis_trips import round_trips
from tests.jobs.test_schedule import ctx, make_mailbox, queued_ids  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("ctx")


def make_due(count: int, now: float, prefix: str = "m") -> list[str]:
    """``count`` running mailboxes due at ``now - 5``."""
    mids = [f"{prefix}{i:04d}" for i in range(count)]
    for mid in mids:
        make_mailbox(mid, org=f"00DORG{int(mid[-1]) % 3}", when=now - 5)
    return mids


def test_a_tick_costs_the_same_round_trips_for_ten_or_three_hundred_due() -> None:
    now = time.time()
    make_due(1, now, "w")
    run_tick(services(), now)  # warm: the scripts loaded, the pools' connections open
    counts = {}
    for n, prefix in ((10, "a"), (300, "b")):
        make_due(n, now, prefix)
        with round_trips() as trips:
            result = run_tick(services(), now)
        assert result["queued"] == n
        counts[n] = trips.count
    # Claim (one script), WATCH, the re-check (one script), the enqueue transaction.
    assert counts[10] == counts[300] == 4
    assert len(queued_ids()) == 311


def test_two_clocks_ticking_at_once_queue_each_mailbox_once(app: Flask) -> None:
    now = time.time()
    mids = make_due(200, now)
    results: list[dict[str, Any]] = []

    def clock() -> None:
        with app.app_context():
            results.append(run_tick(services(), now, limit=60))

    for _ in range(3):
        threads = [threading.Thread(target=clock) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sum(r["queued"] for r in results) == 200
    assert sorted(queued_ids()) == sorted(job_id_for(m) for m in mids)


def test_a_crash_between_claim_and_enqueue_loses_no_mailbox(monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    mids = make_due(5, now)

    def crash(mailbox_ids: list[str]) -> int:
        raise ConnectionError("the clock died here")

    monkeypatch.setattr(jobs_sync, "enqueue_background_runs", crash)
    with pytest.raises(ConnectionError):
        run_tick(services(), now)
    monkeypatch.undo()
    assert queued_ids() == []
    assert run_tick(services(), now + 60)["due"] == 0  # leased: not taken by the next tick
    result = run_tick(services(), now + CLAIM_LEASE_SECONDS + 1)  # the lease ran out
    assert result["queued"] == 5 and sorted(queued_ids()) == sorted(job_id_for(m) for m in mids)
    # The slot is still the one planned before the crash: the next run is planned from it.
    assert services().store.schedule.slot_start(mids[0], now + CLAIM_LEASE_SECONDS + 2) == pytest.approx(now - 5)


def test_a_sync_now_landing_between_the_check_and_the_enqueue_keeps_its_one_job(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    mids = make_due(4, now)
    original = jobs_sync.run_job_data
    raced: list[str] = []

    def with_a_racing_sync_now(mailbox_id: str, interactive: bool, retry: Any) -> Any:
        if not raced and not interactive:
            # The person presses Sync now after the tick's re-check, before its transaction runs.
            raced.append(mailbox_id)
            assert enqueue_sync(mailbox_id, interactive=True)
        return original(mailbox_id, interactive, retry)

    monkeypatch.setattr(jobs_sync, "run_job_data", with_a_racing_sync_now)
    result = run_tick(services(), now)
    assert raced and result["queued"] == 3 and result["skipped"] == 1
    assert services().queue(QUEUE_INTERACTIVE).job_ids == [job_id_for(raced[0])]
    assert sorted(queued_ids()) == sorted(job_id_for(m) for m in mids if m != raced[0])
    job = Job.fetch(job_id_for(raced[0]), connection=services().redis_raw)
    assert job.origin == QUEUE_INTERACTIVE and job.kwargs == {"interactive": True}


def test_a_failed_runs_leftover_is_replaced_and_a_queued_run_left_alone() -> None:
    now = time.time()
    make_mailbox("failed", when=now - 5)
    make_mailbox("waiting", when=now - 5)
    assert enqueue_sync("failed") and enqueue_sync("waiting")
    raw = services().redis_raw
    raw.lrem(services().queue(QUEUE_SYNC).key, 0, job_id_for("failed"))  # a worker ran it; it failed
    Job.fetch(job_id_for("failed"), connection=raw).set_status(JobStatus.FAILED)
    result = run_tick(services(), now)
    assert result == {"due": 2, "queued": 1, "held": 0, "skipped": 1, "ms": result["ms"]}
    assert queued_ids() == [job_id_for("waiting"), job_id_for("failed")]
    assert Job.fetch(job_id_for("failed"), connection=raw).get_status() is JobStatus.QUEUED
