"""/healthz: the clock's last tick and the queue lag, 503 when either is late."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask

from backend.extensions import services

INTERVAL = 1800  # SYNC_INTERVAL_SECONDS's default, which app_config keeps


def arrange(app: Flask, tick_age: float | None, overdue: float | None) -> None:
    """The clock's last tick ``tick_age`` seconds ago, one mailbox due ``overdue`` seconds ago."""
    now = time.time()
    with app.app_context():
        svc = services()
        if tick_age is not None:
            svc.redis.set(svc.store.schedule.tick_key, repr(now - tick_age))
        if overdue is not None:
            svc.store.schedule.set_next("mbx-1", now - overdue)


@pytest.mark.parametrize(("tick_age", "overdue", "clock", "lag"), [
    (10, None, "ok", "ok"),
    (170, 60, "ok", "ok"),
    (None, None, "never", "ok"),
    (10, INTERVAL - 60, "ok", "ok"),
    (-5, -300, "ok", "ok"),  # a mailbox due later is no lag
])
def test_healthz_is_ok(app: Flask, tick_age: float | None, overdue: float | None, clock: str, lag: str) -> None:
    arrange(app, tick_age, overdue)
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 200, resp.json
    body: dict[str, Any] = resp.json  # type: ignore[assignment]
    assert (body["status"], body["redis"], body["clock"], body["queue_lag"]) == ("ok", "ok", clock, lag)
    assert (body["clock_last_tick"] is None) == (tick_age is None)


@pytest.mark.parametrize(("tick_age", "overdue", "clock", "lag"), [
    (181, None, "late", "ok"),
    (3600, 60, "late", "ok"),
    (10, INTERVAL + 5, "ok", "late"),
    (500, INTERVAL * 3, "late", "late"),
])
def test_healthz_is_503_when_the_clock_or_the_queue_is_late(app: Flask, tick_age: float, overdue: float | None,
                                                            clock: str, lag: str) -> None:
    arrange(app, tick_age, overdue)
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 503
    body: dict[str, Any] = resp.json  # type: ignore[assignment]
    assert (body["status"], body["redis"], body["clock"], body["queue_lag"]) == ("error", "ok", clock, lag)
    if overdue is not None:
        assert body["queue_lag_seconds"] >= overdue - 1


def test_a_tick_notes_its_time(app: Flask) -> None:
    from backend.jobs.schedule import run_tick

    with app.app_context():
        svc = services()
        run_tick(svc, time.time() - 200)
    assert app.test_client().get("/healthz").json["clock"] == "late"  # type: ignore[index]
    with app.app_context():
        run_tick(services(), time.time())
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 200 and resp.json["clock"] == "ok"  # type: ignore[index]


def test_a_claimed_run_still_waiting_for_a_worker_is_lag(app: Flask) -> None:
    # The tick leases what it claims (score: now + lease): the planned start must still count.
    from backend.jobs.schedule import CLAIM_LEASE_SECONDS, run_tick
    from backend.store.users import User

    now = time.time()
    with app.app_context():
        svc = services()
        svc.store.users.save(User(id="u1", org_id="00DORG", sf_user_id="005u1"))
        svc.store.mailboxes.ensure("u1", "00DORG")
        svc.store.mailboxes.activate("u1", "exchange", "u1@acme.example")
        svc.store.schedule.set_next("u1", now - 7200)  # due two hours ago; no worker takes its job
        run_tick(svc, now)
        run_tick(svc, now + CLAIM_LEASE_SECONDS + 1)  # the lease ran out, claimed again
        svc.redis.set(svc.store.schedule.tick_key, repr(time.time()))
    body: dict[str, Any] = app.test_client().get("/healthz").json  # type: ignore[assignment]
    assert body["queue_lag"] == "late" and body["queue_lag_seconds"] >= 7200 - 5, body
    with app.app_context():
        # Its run ends and schedules the next: nothing waits any more.
        services().store.schedule.set_next("u1", time.time() + INTERVAL)
    body = app.test_client().get("/healthz").json  # type: ignore[assignment]
    assert body["queue_lag"] == "ok" and body["queue_lag_seconds"] == 0, body


def test_a_mailbox_whose_run_cannot_start_does_not_read_as_lag_for_ever(app: Flask) -> None:
    # Its user record is gone: the run skips; left as claimed, each lease would claim it again.
    from backend.extensions import QUEUE_SYNC
    from backend.jobs.schedule import CLAIM_LEASE_SECONDS, run_tick

    with app.app_context():
        svc = services()
        now = time.time()
        svc.store.mailboxes.ensure("nouser1", "00DORG")
        svc.store.mailboxes.activate("nouser1", "exchange", "nouser1@acme.example")
        svc.store.schedule.set_next("nouser1", now - 5)
        assert run_tick(svc, now)["queued"] == 1
        svc.queue(QUEUE_SYNC).empty()
        assert svc.engine.run("nouser1")["status"] == "skipped"
        for later in (CLAIM_LEASE_SECONDS + 1, INTERVAL - 60):  # its lease runs out, the interval does not
            assert run_tick(svc, now + later)["queued"] == 0
        assert svc.store.redis.zcard(svc.store.schedule.waiting_key) == 0
        svc.redis.set(svc.store.schedule.tick_key, repr(time.time()))
        next_run = svc.store.schedule.next_of("nouser1")
        assert next_run is not None and next_run >= now + INTERVAL - 5  # looked at again an interval later
