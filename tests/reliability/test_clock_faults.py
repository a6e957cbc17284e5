"""The clock under process faults: two ``rq cron`` clocks ticking at once, one SIGKILLed and restarted,
and a clock process dying in the middle of a tick (after its claim, before its enqueue). Every due
mailbox is enqueued exactly once, none leaves the schedule."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from rq.registry import StartedJobRegistry

from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services
from backend.jobs.schedule import CLAIM_LEASE_SECONDS, run_tick
from backend.jobs.sync import job_id_for
from tests.e2e import ROOT, Worker, env_value, start_clock, start_worker, wait_until
from tests.jobs.test_schedule import make_mailbox

pytestmark = pytest.mark.slow

# What a clock process does when it dies between the claim and the enqueue: the tick's claim (one
# script) has run, then the process is SIGKILLed before its enqueue transaction.
CRASH_MID_TICK = """
import os, signal, time
from backend import create_app
from backend.extensions import services
from backend.jobs import sync
from backend.jobs.schedule import run_tick

def die(mailbox_ids):
    print("claimed", len(mailbox_ids), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

sync.enqueue_background_runs = die
with create_app().app_context():
    run_tick(services(), time.time())
"""


def due_mailboxes(count: int, prefix: str) -> list[str]:
    """``count`` running mailboxes due a little while ago (in the caller's app context)."""
    mids = [f"{prefix}{i:03d}" for i in range(count)]
    for mid in mids:
        make_mailbox(mid, when=time.time() - 5)
    return mids


def queued() -> list[str]:
    """The run jobs waiting in the background queue (no worker takes from it here)."""
    return list(services().queue(QUEUE_SYNC).job_ids)


def ticks_done() -> bool:
    """No tick waiting or running."""
    svc = services()
    return svc.queue(QUEUE_INTERACTIVE).count == 0 and \
        StartedJobRegistry(QUEUE_INTERACTIVE, connection=svc.redis_raw).count == 0


def crash_mid_tick(config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run one tick in a process that is SIGKILLed after its claim."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESFORCE_") and k != "REDIS_URL"}
    env.update({k: env_value(v) for k, v in config.items()})
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-c", CRASH_MID_TICK], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def ticks_in(workers: list[Worker]) -> int:
    """How many clock ticks the tick workers ran."""
    return sum(w.log().count(f": {QUEUE_INTERACTIVE}: backend.jobs.schedule.tick(") for w in workers)


def test_two_clocks_a_restarted_clock_and_a_tick_cut_short_enqueue_each_due_mailbox_once(
        app: Flask, app_config: dict[str, Any], tmp_path: Path) -> None:
    procs: list[Worker] = []
    try:
        with app.app_context():
            first = due_mailboxes(40, "a")
            # Ticks go to the interactive queue; two workers take them. The runs they enqueue stay in
            # the background queue, which nobody serves here: what is queued is what is counted.
            workers = [start_worker(app_config, tmp_path, f"tick{i}", queues=(QUEUE_INTERACTIVE,)) for i in range(2)]
            procs += workers
            clocks = [start_clock(app_config, tmp_path) for _ in range(2)]  # each ticks at once on start
            procs += clocks
            wait_until(lambda: ticks_in(workers) >= 2 and ticks_done(), 60, "both clocks' ticks", workers[0])
            assert sorted(queued()) == sorted(job_id_for(m) for m in first)  # each once

            # One clock SIGKILLed and restarted: it ticks again at once, and queues nothing twice.
            clocks[0].kill()
            procs.append(start_clock(app_config, tmp_path))
            wait_until(lambda: ticks_in(workers) >= 3 and ticks_done(), 60, "the restarted clock's tick", workers[0])
            assert sorted(queued()) == sorted(job_id_for(m) for m in first)

            # A clock dies in the middle of a tick: its claim leased the newly due, its enqueue never ran.
            second = due_mailboxes(20, "b")
            crashed = crash_mid_tick(app_config)
            assert crashed.returncode == -9 and "claimed 20" in crashed.stdout, crashed.stderr[-3000:]
            schedule = services().store.schedule
            assert schedule.count() == 60  # nothing left the schedule
            assert len(queued()) == 40
            # Once the lease runs out the next tick takes them; the ones already queued are not queued again.
            later = run_tick(services(), time.time() + CLAIM_LEASE_SECONDS + 1)
            assert later["queued"] == 20 and later["due"] == 60
            assert sorted(queued()) == sorted(job_id_for(m) for m in first + second)
            assert schedule.count() == 60
    finally:
        for proc in procs:
            proc.stop()
