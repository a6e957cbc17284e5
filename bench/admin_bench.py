"""Admin console benchmark (not a timed test): a page of ``GET /api/admin/users`` in an org of 10,000 users.

Seeds ``--users`` users of one org (plus ``--others`` in other orgs), each with a sync mailbox in a
mix of states and providers, a run record (``store.runs.record``, as the engine writes it) and a
last run on the mailbox; then asks the API for pages as the console does (through the Flask app,
with an admin's bearer token): unfiltered, filtered by state and provider, and searched. Prints the
p50/p95 of each and the Redis round trips per request (commands or pipelines sent to the server),
which must not grow with the org. Every request is cold: no process keeps rows, each page is read
from the store's index (``backend/store/directory.py``). The seed writes the hashes directly, as a
deployment from before the index holds them, so the index is then built the way such a deployment
builds it (``store.directory.rebuild``, timed). Target: a page under 100 ms on this machine.

Run from the repository root:
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/admin_bench.py [--users 10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
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
from backend.api.tokens import issue_token  # noqa: E402
from backend.extensions import services  # noqa: E402
from backend.store.mailboxes import SyncState, default_settings  # noqa: E402
from backend.store.users import User, user_id_for  # noqa: E402
from sandbox.redis_server import flush_keeping_claim, own_database  # noqa: E402
from sandbox.redis_trips import RoundTrips  # noqa: E402

ORG = "00DBENCH000000AEAA"
STATES = [SyncState.RUNNING] * 6 + [SyncState.PAUSED, SyncState.DISABLED_ERROR, SyncState.NOT_ACTIVATED,
                                    SyncState.DEACTIVATED]
PROVIDERS = ("microsoft", "exchange", "google")
QUERIES = {
    "page 1, sorted by name": "per_page=50",
    "page 40, sorted by last run": "per_page=50&page=40&sort=last_run&order=desc",
    "filtered: disabled Microsoft 365": "state=disabled_error&provider=microsoft",
    "searched: 'user12' (name or address)": "q=user12",
    "filtered + searched": "state=running&q=acme-3",
}


def seed(app: Flask, users: int, others: int) -> str:
    """The org's users, mailboxes and run records, written in pipelines; returns the admin's uid."""
    store = services().store
    r, keys = store.redis, store.keys
    now = time.time()
    with r.pipeline(transaction=False) as pipe:
        for n in range(users + others):
            org = ORG if n < users else f"00DOTHER{n % 7:07d}AAA"
            sf_id = f"005B{n:011d}AAA"
            uid = user_id_for(org, sf_id)
            user = User(id=uid, org_id=org, sf_user_id=sf_id, username=f"user{n}@acme-{n % 10}.example",
                        email=f"user{n}@acme-{n % 10}.example", display_name=f"User {n:05d}",
                        last_seen_at=now - n)
            fields = {k: json.dumps(v) for k, v in user.__dict__.items()}
            pipe.hset(keys("user", uid), mapping=fields)
            pipe.sadd(keys("org", "users", org), uid)
            pipe.sadd(keys("users"), uid)
            state = STATES[n % len(STATES)]
            run = {"id": f"r{n}", "started_at": "2026-12-01T10:00:00+00:00",
                   "finished_at": f"2026-12-01T10:{n % 60:02d}:00+00:00", "status": "ok",
                   "counts": {"read": n % 40, "written": n % 30, "duplicates": 0, "filtered": n % 5,
                              "quarantined": 0}, "error": None, "salesforce_calls": 2, "mailbox_calls": 3}
            mailbox = {"id": uid, "user_id": uid, "org_id": org, "state": state.value,
                       "provider": "" if state is SyncState.NOT_ACTIVATED else PROVIDERS[n % 3],
                       "address": f"user{n}@acme-{n % 10}.example", "connection": {}, "settings": default_settings(),
                       "error": ({"code": "auth_failed", "message": "The password was refused.", "since": now}
                                 if state is SyncState.DISABLED_ERROR else None),
                       "last_run": run, "caught_up_at": now - 600, "activated_at": now - 86400}
            pipe.hset(keys("mailbox", uid), mapping={k: json.dumps(v) for k, v in mailbox.items()})
            pipe.sadd(keys("mailboxes"), uid)
            pipe.lpush(keys("runs", uid), json.dumps(run))
            if n % 500 == 499:
                pipe.execute()
        pipe.execute()
    admin = User(id=user_id_for(ORG, "005ADMIN0000000AAA"), org_id=ORG, sf_user_id="005ADMIN0000000AAA",
                 username="admin@acme-0.example", display_name="Admin", is_admin=True, admin_checked_at=now)
    store.users.save(admin)
    return admin.id


def _p95(times: list[float]) -> float:
    ordered = sorted(times)
    return round(ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)], 1)


def measure(app: Flask, token: str, admin: str, rounds: int) -> dict[str, Any]:
    """p50/p95 and round trips of each query (every one cold: nothing is kept between requests)."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    trips = RoundTrips()
    results: dict[str, Any] = {}
    for name, query in QUERIES.items():
        times: list[float] = []
        counts: list[int] = []
        total = 0
        for _ in range(rounds):
            with app.app_context():
                # The admin check is cached five minutes: keep it fresh so Salesforce is not asked.
                services().store.users.update(admin, admin_checked_at=time.time(), last_seen_at=time.time())
            trips.count = 0
            with trips.counting():
                started = time.perf_counter()
                resp = client.get(f"/api/admin/users?{query}", headers=headers,
                                  environ_base={"wsgi.url_scheme": "https", "HTTP_HOST": "localhost:3000"})
                times.append((time.perf_counter() - started) * 1000)
            assert resp.status_code == 200, resp.get_data(as_text=True)
            counts.append(trips.count)
            total = resp.json["total"]  # type: ignore[index]
        results[name] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": _p95(times),
                         "round_trips": max(counts), "matches": total}
    return results


def run(users: int, others: int, rounds: int) -> dict[str, Any]:
    """Seed, measure at the full size and at a tenth of it (round trips must be the same)."""
    with own_database() as redis_url:
        config = {"SIDEBAR_ENV": "production", "SECRET_KEY": "bench-secret-key-" + "x" * 32,
                  "ENCRYPTION_KEYS": Fernet.generate_key().decode(), "REDIS_URL": redis_url, "KEY_PREFIX": "ssadmin:",
                  "PUBLIC_BASE_URL": "https://localhost:3000", "SALESFORCE_CLIENT_ID": "x",
                  "SALESFORCE_CLIENT_SECRET": "y", "LOG_LEVEL": "WARNING"}
        report: dict[str, Any] = {}
        for size in (max(1, users // 10), users):
            app = create_app(config)
            with app.app_context():
                flush_keeping_claim(services().redis)
                started = time.perf_counter()
                admin = seed(app, size, others)
                seeded = time.perf_counter() - started
                started = time.perf_counter()
                services().store.directory.rebuild(ORG)
                built = time.perf_counter() - started
            with app.test_request_context():
                token = issue_token(admin).token
            report[str(size)] = {"seed_s": round(seeded, 1), "index_build_s": round(built, 2),
                                 "queries": measure(app, token, admin, rounds)}
            with app.app_context():
                flush_keeping_claim(services().redis)
        return report


def main() -> None:
    """Run and print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--others", type=int, default=2_000, help="users of other orgs in the same Redis")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.users, args.others, args.rounds)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for size, part in report.items():
        print(f"Org of {size} users (+{args.others} in other orgs), seeded in {part['seed_s']} s, "
              f"index built in {part['index_build_s']} s; every page cold (target < 100 ms):")
        for name, figures in part["queries"].items():
            print(f"  {name:40} p50 {figures['p50_ms']:7.1f} ms  p95 {figures['p95_ms']:7.1f} ms  "
                  f"round trips {figures['round_trips']}  ({figures['matches']} match)")


if __name__ == "__main__":
    main()
