"""Two real worker processes racing for one mailbox: the mailbox enqueued twice (background and Sync now,
from several threads at once), and runs forced while one runs. One run at a time, each enqueue
refused while a run is queued or running, and nothing written twice."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import pytest

from backend.jobs.sync import enqueue_sync, job_id_for, job_status
from backend.observability.logs import mailbox_hash, redact
from tests.e2e import SyncEnv, wait_until
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


def enqueue_at_once(env: SyncEnv, count: int) -> list[bool]:
    """``count`` enqueues of the mailbox's run from as many threads at once (half Sync now, half background)."""
    barrier = threading.Barrier(count)
    results: list[bool] = []
    lock = threading.Lock()

    def enqueue(interactive: bool) -> None:
        with env.app.app_context():
            barrier.wait()
            queued = enqueue_sync(env.uid, interactive=interactive)
        with lock:
            results.append(queued)

    threads = [threading.Thread(target=enqueue, args=(i % 2 == 0,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def status(env: SyncEnv) -> str | None:
    """The mailbox's run job state."""
    with env.app.app_context():
        return job_status(env.uid)


def test_two_workers_racing_for_one_mailbox_run_it_once_at_a_time(env_factory: Callable[..., SyncEnv]) -> None:  # noqa: F811
    env = env_factory(SYNC_BATCH_ITEMS=10)
    seed_people(env)
    env.log_in()
    mail = seed_mail(env, 30, prefix="race")
    events = seed_events(env, 2, prefix="race")
    env.sf.write_delay = 0.4  # each run lasts a couple of seconds: long enough to be raced
    env.activate()  # queues the first run (Sync now's queue)
    assert enqueue_at_once(env, 6) == [False] * 6  # queued already: every other enqueue refused
    workers = [env.worker("one"), env.worker("two")]
    for round_ in range(2):
        wait_until(lambda: status(env) == "running", 30, "the run to start", workers[0])
        # Forced while it runs, from both queues: refused, the running run is left alone.
        assert enqueue_at_once(env, 6) == [False] * 6
        assert status(env) == "running"
        env.wait_runs(round_ + 1)
        mail.update(seed_mail(env, 12, prefix="race", start=100 + 100 * round_))
        # Idle workers, the mailbox enqueued six times at once: exactly one run is queued.
        if round_ == 0:
            env.sf.write_delay = 1.0  # two batches: the second run too lasts long enough to be raced
            assert sorted(enqueue_at_once(env, 6)) == [False] * 5 + [True]
    runs = env.runs()
    assert len(runs) == 2 and all(r["status"] == "ok" for r in runs), runs
    # One at a time: the later run started after the earlier one finished.
    newer, older = runs
    assert datetime.fromisoformat(older["finished_at"]) <= datetime.fromisoformat(newer["started_at"])
    # Each worker took at most what was queued: two runs in all across both processes.
    # RQ logs each job it starts by its description and id, the mailbox named by its hash only.
    started = sum(w.log().count(redact(f": sync mailbox={mailbox_hash(env.uid)} ({job_id_for(env.uid)})"))
                  for w in workers)
    assert env.uid not in "".join(w.log() for w in workers)
    assert started == 2
    # The emails seeded after the second run are the next run's; run it and check everything.
    env.sf.write_delay = 0.0
    assert env.run_now()
    env.wait_runs(3)
    assert_logged_once(env, mail, events)
    assert scheduled_at(env) is not None
