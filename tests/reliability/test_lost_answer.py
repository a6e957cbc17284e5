"""A Salesforce write that committed but whose answer was lost (the connection cut after the request was
processed): the run fails as "Salesforce unavailable", its retry finds the records already there and
writes nothing twice. For every provider, emails and meetings."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e import SyncEnv
from tests.reliability.faults_env import (  # noqa: F401 - fixtures
    assert_logged_once,
    env_factory,
    scheduled_at,
    seed_events,
    seed_mail,
    seed_people,
    smtp_sink,
)

pytestmark = pytest.mark.slow

EMAILS = 30
BATCH = 10


def test_writes_whose_answers_were_lost_are_not_written_again(
        env_factory: Callable[..., SyncEnv]) -> None:  # noqa: F811
    env = env_factory(SYNC_BATCH_ITEMS=BATCH, SYNC_RETRY_SECONDS="0,0,0")
    seed_people(env)
    env.log_in()
    mail = seed_mail(env, EMAILS, prefix="lost")
    events = seed_events(env, 3, prefix="lost")
    # The first write's answer is lost; so is the first write of the retry (a later batch).
    env.sf.lose_write_answers = 2
    env.activate()
    env.worker()
    newest = env.wait_runs(3)
    runs = env.runs()
    assert newest["status"] == "ok", runs
    assert [r["status"] for r in runs] == ["ok", "error", "error"]
    assert all(r["error"]["source"] == "salesforce" for r in runs[1:]), [r["error"] for r in runs]
    lost = [c for c in env.sf.calls if not c.answered]
    assert len(lost) == 2 and all(c.records_written > 0 for c in lost)  # they did commit
    assert_logged_once(env, mail, events)
    # What each lost answer had committed (a batch of emails), the next attempt found in Salesforce
    # (duplicates) rather than wrote again; the last attempt wrote only the rest.
    oldest_first = [r["counts"] for r in reversed(runs)]
    assert [c["duplicates"] for c in oldest_first] == [0, BATCH, 2 * BATCH]
    assert [c["written"] for c in oldest_first] == [0, 0, EMAILS - 2 * BATCH + len(events)]
    assert scheduled_at(env) is not None
