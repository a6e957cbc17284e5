"""Redis restarted in the middle of a run (SIGKILLed, then started again from its append-only file):
the run completes after the reconnect or is retried, the schedule is intact, nothing is written twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from backend.extensions import services
from sandbox.redis_server import PrivateRedis
from tests.e2e import SyncEnv, wait_until
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


@pytest.mark.parametrize("outage", [0.5, 12.0], ids=["blip", "outage"])
def test_redis_restarted_mid_run_keeps_the_schedule_and_logs_everything_once(
        env_factory: Callable[..., SyncEnv], restartable_redis: PrivateRedis,  # noqa: F811
        fake_salesforce: Any, outage: float) -> None:
    env = env_factory(REDIS_URL=restartable_redis.url, SYNC_BATCH_ITEMS=10, SYNC_RETRY_SECONDS="0,0,0")
    seed_people(env)
    env.log_in()
    mail = seed_mail(env, EMAILS, prefix="redis")
    events = seed_events(env, 3, prefix="redis")
    env.sf.write_delay = 0.5
    env.activate()
    worker = env.worker()
    wait_until(lambda: len(env.sf.write_calls) >= 2, 60, "two batches written", worker)
    restartable_redis.kill()
    time.sleep(outage)
    restartable_redis.start()
    env.sf.write_delay = 0.0
    if outage > 5:
        # A longer outage outlasts redis-py's retries: RQ's worker quits (it cannot heartbeat while its
        # job runs) and the run fails unrecorded. The process manager starts a new worker, whose
        # maintenance finds the run abandoned and retries it.
        wait_until(lambda: worker.proc.poll() is not None, 30, "the worker to give up", worker)
        assert scheduled_at(env) is not None  # not unscheduled while no run is alive
        rescue_abandoned(env, fake_salesforce)
        worker = env.worker("restarted")
    record = env.wait_runs(1)
    assert record["status"] == "ok", env.runs()
    assert_logged_once(env, mail, events)
    # The schedule survived and the run set the next background run from it.
    when = scheduled_at(env)
    with env.app.app_context():
        assert services().store.schedule.count() == 1
        interval = services().settings.SYNC_INTERVAL_SECONDS
    assert when is not None and when > time.time() + interval / 2
