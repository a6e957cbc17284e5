"""A real, small, time-compressed day (``sandbox/real_day.py``): real ``rq worker`` processes sync mailboxes on
the EWS, Graph and Gmail fakes into the fake Salesforce while mail arrives; no mailbox waits an interval,
none is starved, and every email is logged exactly once.

Two intervals of 60 s (the shortest ``SYNC_INTERVAL_SECONDS``) is the smallest honest day: the first runs
are spread over the first interval, so only the second one shows the gap between two runs (~2 minutes).
"""

from __future__ import annotations

import pytest
import redis

from sandbox.real_day import RealDay, RealDayConfig, RealDayFigures
from sandbox.redis_server import flush_keeping_claim

CONFIG = RealDayConfig(mailboxes=30, workers=2, intervals=2)


@pytest.fixture(scope="module")
def figures(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> RealDayFigures:
    """The day, played once for the module's checks on the claimed database (emptied before and after)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    flush_keeping_claim(client)
    day = RealDay(CONFIG, redis_url, str(tmp_path_factory.mktemp("real-day")))
    try:
        played = day.play()
    except BaseException:
        print(day.worker_logs())
        raise
    finally:
        day.close()
        flush_keeping_claim(client)
        client.close()
    return played


@pytest.mark.slow
def test_every_mailbox_runs_every_interval_without_waiting_an_interval(figures: RealDayFigures) -> None:
    assert figures.never_ran == 0
    # Every mailbox ran once an interval (its first run in the first, the next one interval later).
    assert figures.runs >= CONFIG.mailboxes * CONFIG.intervals - CONFIG.mailboxes // 10, figures.runs_per_interval
    assert len(figures.due_lags) == figures.runs + figures.unserved
    assert figures.worst(figures.due_lags) < CONFIG.interval_seconds
    assert figures.worst(figures.queue_waits) < CONFIG.interval_seconds
    assert figures.starved == 0
    assert 0 < figures.max_gap_over_scheduled < 2


@pytest.mark.slow
def test_every_email_is_logged_once(figures: RealDayFigures) -> None:
    assert figures.emails_sent > 0
    assert (figures.lost, figures.duplicated, figures.unexpected) == (0, 0, 0)


@pytest.mark.slow
def test_the_workers_memory_is_measured(figures: RealDayFigures) -> None:
    # The parents' RSS per interval for each worker, and the work horses seen (one fork per job).
    assert len(figures.rss_parent_mb) == CONFIG.intervals
    assert all(len(row) == CONFIG.workers and all(mb > 20 for mb in row) for row in figures.rss_parent_mb)
    assert max(figures.rss_horse_mb) > 20
