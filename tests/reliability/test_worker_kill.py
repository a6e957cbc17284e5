"""A worker SIGKILLed in the middle of a run's Salesforce writes, for every provider: a new worker
finishes the run; nothing is missing and nothing is written twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e import SyncEnv, wait_until
from tests.reliability.faults_env import (  # noqa: F401 - fixtures
    assert_logged_once,
    env_factory,
    rescue_abandoned,
    scheduled_at,
    seed_events,
    seed_mail,
    seed_people,
    smtp_sink,
)

pytestmark = pytest.mark.slow

EMAILS = 50


def test_a_worker_killed_mid_writes_leaves_nothing_missing_and_nothing_twice(
        env_factory: Callable[..., SyncEnv], fake_salesforce: Any) -> None:  # noqa: F811
    # Retries without a wait: RQ requeues the abandoned job at once instead of through a scheduler
    # (the dead worker's scheduler lock would hold the new one off for up to two minutes).
    env = env_factory(SYNC_BATCH_ITEMS=10, SYNC_RETRY_SECONDS="0,0,0")
    seed_people(env)
    env.log_in()
    mail = seed_mail(env, EMAILS, prefix="kill")
    events = seed_events(env, 4, prefix="kill")
    env.sf.write_delay = 0.7  # each write call takes a while: the kill lands between two of them
    env.activate()
    doomed = env.worker("doomed")
    wait_until(lambda: len(env.sf.write_calls) >= 2, 60, "two batches written", doomed)
    doomed.kill()
    written_at_kill = len(env.sf.all("EmailMessage"))
    assert 0 < written_at_kill < EMAILS  # some but not all: the kill was mid-run
    rescue_abandoned(env, fake_salesforce)
    before_rerun = len(env.sf.all("EmailMessage")) + len(env.sf.all("Event"))
    env.sf.write_delay = 0.0
    env.worker("rescuer")
    record = env.wait_runs(1)
    assert record["status"] == "ok"
    assert_logged_once(env, mail, events)
    # The rerun (and any retry of it) wrote exactly what was missing: nothing rewritten.
    assert sum(r["counts"]["written"] for r in env.runs()) == EMAILS + len(events) - before_rerun
    assert scheduled_at(env) is not None
