"""A simulated day in virtual time (``sandbox/day.py``): the real clock, schedule, queue and cadence keep
every mailbox within its interval, none starved, memory flat; and the measure bites when capacity is short."""

from __future__ import annotations

import time

import pytest
from flask import Flask

from backend.extensions import services
from sandbox.day import Day, DayConfig, DayFigures


def play(app: Flask, config: DayConfig) -> tuple[DayFigures, int]:
    """Seed and play ``config`` on the test app's Redis; the figures and the base interval."""
    with app.app_context():
        svc = services()
        day = Day(svc, config, time.time())
        day.seed()
        return day.play(), int(svc.settings.SYNC_INTERVAL_SECONDS)


@pytest.mark.slow
def test_a_day_keeps_every_mailbox_within_its_interval(app: Flask) -> None:
    figures, interval = play(app, DayConfig(mailboxes=800, hours=4, workers=4, start_hour=7))
    assert figures.never_ran == 0
    assert figures.starved == 0
    assert figures.max_lag < interval
    # The first hour runs everyone once at least; later hours settle at the stretched intervals.
    assert figures.hourly_runs[0] >= 800 and min(figures.hourly_runs) > 0
    assert figures.hourly_rss_mb[-1] <= 1.1 * figures.hourly_rss_mb[0]


@pytest.mark.slow
def test_too_few_workers_show_as_lag_and_starvation(app: Flask) -> None:
    # Runs of 9-12 s for 400 mailboxes every 30 minutes need more than two hours of one worker: the day
    # must say so (a mailbox waits longer than two intervals between runs).
    slow = DayConfig(mailboxes=400, hours=3, workers=1, quiet_run=(9.0, 12.0), busy_run=(9.0, 12.0))
    figures, interval = play(app, slow)
    assert figures.max_lag > interval
    assert figures.starved > 0
