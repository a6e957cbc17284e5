"""Clock benchmark (not a timed test): one tick ÷ a bare pipelined ``Queue.enqueue_many`` of the same jobs.

Seeds ``due`` running mailboxes (in 20 orgs) due now among ``scheduled`` mailboxes in the schedule,
then, each round, times one clock tick (``run_tick``: claim, read, enqueue) and, on the same Redis
in the same process, a bare ``enqueue_many`` of the very jobs the tick enqueues (``run_job_data``,
one pipeline), each from the same empty queue. Prints the median ratio of the rounds with its
spread, and the tick's Redis round trips (commands or pipelines sent).

Run from the repository root:
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/clock_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cryptography.fernet import Fernet  # noqa: E402
from flask import Flask  # noqa: E402

from backend import create_app  # noqa: E402
from backend.extensions import QUEUE_SYNC, Services, services  # noqa: E402
from backend.jobs.schedule import run_tick  # noqa: E402
from backend.jobs.sync import retry_policy, run_job_data  # noqa: E402
from backend.store.users import User  # noqa: E402
from sandbox.redis_server import flush_keeping_claim, own_database  # noqa: E402
from sandbox.redis_trips import round_trips  # noqa: E402

DUE = 1000
SCHEDULED = 50_000
ORGS = 20
TARGET = 2.0


def seed(svc: Services, due: int, scheduled: int) -> list[str]:
    """Running mailboxes (their users and orgs) and the idle rest of the schedule; returns the due ids."""
    store = svc.store
    mids = [f"due{i:05d}" for i in range(due)]
    for i, uid in enumerate(mids):
        org = f"00DBENCH{i % ORGS:03d}AAA"
        store.users.save(User(id=uid, org_id=org, sf_user_id=f"005B{i:011d}"))
        store.mailboxes.ensure(uid, org)
        store.mailboxes.activate(uid, "exchange", f"{uid}@acme.example")
    later = time.time() + 3600
    with store.redis.pipeline(transaction=False) as pipe:
        for i in range(scheduled - due):
            pipe.zadd(store.schedule.key, {f"idle{i:06d}": later + i})
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
    return mids


def make_due(svc: Services, mids: list[str]) -> None:
    """Every seeded mailbox due again, none queued (as the schedule has them before a tick)."""
    svc.queue(QUEUE_SYNC).empty()
    when = time.time() - 5
    with svc.store.redis.pipeline(transaction=False) as pipe:
        for mid in mids:
            pipe.zadd(svc.store.schedule.key, {mid: when})
        pipe.execute()


def bare_enqueue_many(svc: Services, mids: list[str]) -> float:
    """Seconds for ``enqueue_many`` of the same jobs the tick enqueues, in one pipeline."""
    queue = svc.queue(QUEUE_SYNC)
    started = time.perf_counter()
    retry = retry_policy()
    datas = [run_job_data(mid, False, retry) for mid in mids]
    with svc.redis_raw.pipeline() as pipe:
        queue.enqueue_many(datas, pipeline=pipe)
        pipe.execute()
    return time.perf_counter() - started


def one_round(svc: Services, mids: list[str]) -> dict[str, float]:
    """A tick and a bare enqueue_many from the same starting point; milliseconds of each."""
    make_due(svc, mids)
    started = time.perf_counter()
    result = run_tick(svc, time.time())
    tick = time.perf_counter() - started
    assert result["queued"] == len(mids), result
    svc.queue(QUEUE_SYNC).empty()
    bare = bare_enqueue_many(svc, mids)
    assert svc.queue(QUEUE_SYNC).count == len(mids)
    svc.queue(QUEUE_SYNC).empty()
    return {"tick_ms": tick * 1000, "bare_ms": bare * 1000, "ratio": tick / bare}


def tick_round_trips(svc: Services, mids: list[str]) -> int:
    """The Redis round trips of one tick (the counter wraps redis-py's send)."""
    make_due(svc, mids)
    with round_trips() as trips:
        run_tick(svc, time.time())
    svc.queue(QUEUE_SYNC).empty()
    return trips.count


def measure(app: Flask, due: int, scheduled: int, rounds: int) -> dict[str, Any]:
    """Seed, warm up, then ``rounds`` rounds; medians and spreads."""
    with app.app_context():
        svc = services()
        flush_keeping_claim(svc.redis)
        mids = seed(svc, due, scheduled)
        one_round(svc, mids)  # warm: connections, scripts loaded, imports
        results = [one_round(svc, mids) for _ in range(rounds)]
        trips = tick_round_trips(svc, mids)
        small = tick_round_trips(svc, mids[: max(1, due // 10)])
        flush_keeping_claim(svc.redis)
    ratios = [r["ratio"] for r in results]
    return {
        "due": due, "scheduled": scheduled, "rounds": rounds,
        "ratio": round(statistics.median(ratios), 2),
        "ratio_spread": [round(min(ratios), 2), round(max(ratios), 2)],
        "tick_ms": round(statistics.median(r["tick_ms"] for r in results), 1),
        "bare_ms": round(statistics.median(r["bare_ms"] for r in results), 1),
        "round_trips": trips, "round_trips_tenth": small,
        "load": round(os.getloadavg()[0], 2),
    }


def run(quick: bool) -> dict[str, Any]:
    """Measure on a database of our own (REDIS_URL's server, or a private redis-server)."""
    with own_database() as redis_url:
        config = {"SIDEBAR_ENV": "production", "SECRET_KEY": "bench-secret-key-" + "x" * 32,
                  "ENCRYPTION_KEYS": Fernet.generate_key().decode(), "REDIS_URL": redis_url,
                  "KEY_PREFIX": "ssclockbench:", "SALESFORCE_CLIENT_ID": "x", "SALESFORCE_CLIENT_SECRET": "y",
                  "LOG_LEVEL": "WARNING"}
        return measure(create_app(config), DUE, SCHEDULED, 3 if quick else 5)


def table_rows(quick: bool) -> list[dict[str, Any]]:
    """The benchmark table's row: P5, the tick ÷ a pipelined enqueue_many."""
    f = run(quick)
    return [{
        "id": "P5",
        "measure": f"clock tick ÷ pipelined Queue.enqueue_many of the same jobs ({f['due']:,} due among "
                   f"{f['scheduled']:,})",
        "value": f["ratio"],
        "target": f"<= {TARGET:g}",
        "detail": f"{f['tick_ms']} vs {f['bare_ms']} ms, median of {f['rounds']} "
                  f"[{f['ratio_spread'][0]}-{f['ratio_spread'][1]}]; {f['round_trips']} Redis round trips "
                  f"({f['round_trips_tenth']} at {f['due'] // 10:,} due); load {f['load']}",
    }]


def main() -> None:
    """Print the row."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 5")
    args = parser.parse_args()
    for row in table_rows(args.quick):
        print(f"{row['id']}  {row['measure']}: {row['value']} (target {row['target']})\n    {row['detail']}")


if __name__ == "__main__":
    main()
