"""The schedule keeps the interval: runs start every interval, from the planned start, not from the last run's end."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from backend.extensions import QUEUE_SYNC, services
from backend.jobs.schedule import TICK_SECONDS, run_tick
from backend.sync.cadence import schedule_next
from tests.jobs.test_schedule import ctx, make_mailbox  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("ctx")

T0 = 1_800_000_000.0  # a tick of the clock (ticks every TICK_SECONDS from here)


def simulate(durations: list[float], changed: bool = True) -> list[float]:
    """Ticks every minute; each run the clock queues lasts the next duration, then reschedules; the starts."""
    svc = services()
    make_mailbox("m", when=T0 + 17)  # planned off the minute, as an activation is
    starts: list[float] = []
    finish: float | None = None
    t = T0
    while len(starts) < len(durations) or finish is not None:
        if finish is not None and finish <= t:
            svc.queue(QUEUE_SYNC).empty()  # the run's job is gone once it ends (result_ttl 0)
            schedule_next(svc.store, svc.settings, "m", changed, finish)
            finish = None
        if run_tick(svc, t)["queued"]:
            assert finish is None, "a second run while one is on its way"
            starts.append(t)
            finish = t + durations[len(starts) - 1]
        t += TICK_SECONDS
    return starts


def test_runs_start_exactly_an_interval_apart() -> None:
    interval = services().settings.SYNC_INTERVAL_SECONDS
    starts = simulate([95.0, 400.0, 1201.5, 20.0, 700.0])
    assert starts[0] == T0 + TICK_SECONDS  # the first tick after the planned start
    assert [b - a for a, b in pairwise(starts)] == [interval] * 4


def test_a_run_that_overran_its_interval_runs_next_at_the_next_tick_without_catch_ups() -> None:
    interval = services().settings.SYNC_INTERVAL_SECONDS
    long_run = 3.4 * interval  # longer than the lease too: the clock finds it still on its way
    starts = simulate([60.0, long_run, 60.0, 60.0])
    assert starts[1] - starts[0] == interval
    finished = starts[1] + long_run
    # Once, at the first tick after it ended: not one run for each slot it overran.
    assert starts[2] == T0 + math.ceil((finished - T0) / TICK_SECONDS) * TICK_SECONDS
    assert starts[3] - starts[2] == interval


def test_quiet_runs_stretch_the_interval_from_the_planned_start() -> None:
    interval = services().settings.SYNC_INTERVAL_SECONDS
    starts = simulate([30.0] * 6, changed=False)
    # Quiet runs in a row: 2 double the interval, 4 quadruple it (backend/sync/cadence.py).
    assert [b - a for a, b in pairwise(starts)] == [interval, 2 * interval, 2 * interval,
                                                                         4 * interval, 4 * interval]


def test_a_retry_or_a_sync_now_between_slots_keeps_the_planned_next_run() -> None:
    svc = services()
    interval = svc.settings.SYNC_INTERVAL_SECONDS
    make_mailbox("m", when=T0 - 5)
    assert run_tick(svc, T0)["queued"] == 1
    svc.queue(QUEUE_SYNC).empty()
    # The run failed at T0 + 40 (the interval stays); RQ retried it 30 s later, and it failed again.
    assert schedule_next(svc.store, svc.settings, "m", None, T0 + 40) == T0 - 5 + interval
    assert schedule_next(svc.store, svc.settings, "m", None, T0 + 75) == T0 - 5 + interval
    # A Sync now in between that found mail leaves the background run where it was planned.
    assert schedule_next(svc.store, svc.settings, "m", True, T0 + 600) == T0 - 5 + interval
    assert svc.store.schedule.next_of("m") == T0 - 5 + interval
