"""Redis restarted in the middle of a run (SIGKILLed, then started again from its append-only file):
the run completes after the reconnect or is retried, the schedule is intact, nothing is written twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from backend.extensions import services
from sandbox.redis_server import PrivateRedis
from tests.e2e import SyncEnv, Worker, wait_until
from tests.reliability.faults_env import (  # noqa: F401 - fixtures
    assert_logged_once,
    env_factory,
    rescue_abandoned,
    restartable_redis,
    scheduled_at,
    seed_events,
    seed_mail,
    seed_people,
    smtp_sink,
)

pytestmark = pytest.mark.slow

EMAILS = 40
# Longer than a worker's Redis retries (backend.jobs.worker: at most 11 s) with a margin.
OUTAGE_SECONDS = 15.0


def start_run(env: SyncEnv) -> tuple[dict[str, str], dict[str, str], Worker]:
    """Seed the mailbox, activate it and wait until the run has written two batches (of 10)."""
    seed_people(env)
    env.log_in()
    mail = seed_mail(env, EMAILS, prefix="redis")
    events = seed_events(env, 3, prefix="redis")
    env.sf.write_delay = 0.5
    env.activate()
    worker = env.worker()
    wait_until(lambda: len(env.sf.write_calls) >= 2, 60, "two batches written", worker)
    return mail, events, worker


def assert_scheduled_after_a_run(env: SyncEnv) -> None:
    """The mailbox is (still) in the schedule, at the next interval its last run set."""
    when = scheduled_at(env)
    with env.app.app_context():
        assert services().store.schedule.count() == 1
        interval = services().settings.SYNC_INTERVAL_SECONDS
    assert when is not None and when > time.time() + interval / 2


def test_a_redis_restart_mid_run_is_waited_out_and_the_run_completes(
        restartable_redis: PrivateRedis, env_factory: Callable[..., SyncEnv]) -> None:  # noqa: F811
    env = env_factory(REDIS_URL=restartable_redis.url, SYNC_BATCH_ITEMS=10, SYNC_RETRY_SECONDS="0,0,0")
    mail, events, worker = start_run(env)
    restartable_redis.kill()
    time.sleep(1.0)
    restartable_redis.start()
    env.sf.write_delay = 0.0
    record = env.wait_runs(1)
    # The same worker, the same attempt: the run reconnected and went on (no failed attempt recorded).
    assert worker.proc.poll() is None, worker.log()[-4000:]
    assert [r["status"] for r in env.runs()] == ["ok"] and record["counts"]["written"] == EMAILS + len(events)
    assert_logged_once(env, mail, events)
    assert_scheduled_after_a_run(env)


@pytest.mark.parametrize("env_factory", ["microsoft"], indirect=True)
def test_a_redis_outage_that_takes_the_worker_down_leaves_the_mailbox_scheduled_and_the_run_is_retried(
        restartable_redis: PrivateRedis, env_factory: Callable[..., SyncEnv],  # noqa: F811
        fake_salesforce: Any) -> None:
    env = env_factory(REDIS_URL=restartable_redis.url, SYNC_BATCH_ITEMS=10, SYNC_RETRY_SECONDS="0,0,0")
    mail, events, worker = start_run(env)
    restartable_redis.kill()
    time.sleep(OUTAGE_SECONDS)
    restartable_redis.start()
    env.sf.write_delay = 0.0
    # Longer than the retries: RQ's worker quits (its job's heartbeat cannot reach Redis) and the run
    # fails unrecorded. The process manager starts a new worker; its maintenance finds the run
    # abandoned and retries it (the same provider-independent path as a SIGKILLed worker).
    wait_until(lambda: worker.proc.poll() is not None, 30, "the worker to give up", worker)
    assert scheduled_at(env) is not None  # not unscheduled while no run is alive
    rescue_abandoned(env, fake_salesforce)
    env.worker("restarted")
    record = env.wait_runs(1)
    assert record["status"] == "ok", env.runs()
    assert_logged_once(env, mail, events)
    assert_scheduled_after_a_run(env)
