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
