"""Pane API benchmark (not a timed test): p95 of ``/api/sync`` and ``/api/me`` ÷ a bare Flask route.

Starts gunicorn as the Procfile does (2 workers, 4 threads each) on the real Redis, serving the app
(``backend.wsgi``'s ``create_app``) plus one bare route (``/bench/bare``: no Redis, no token) on
the same app and the same gunicorn. Seeds a signed-in person with a running Exchange mailbox (ten
run records, quarantined items, a next run), then sends 100 requests a second (open loop, 8
keep-alive connections) to each path in turn and takes each one's p95. Each round gives a ratio
per path (its p95 ÷ the bare route's); printed are the medians of the rounds with their spread, and
the Redis round trips of one request of each (counted in this process through the Flask client).

Run from the repository root:
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/pane_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cryptography.fernet import Fernet  # noqa: E402
from flask import Flask, jsonify  # noqa: E402

from backend import create_app  # noqa: E402
from backend.api.tokens import issue_token  # noqa: E402
from backend.extensions import services  # noqa: E402
from backend.store.users import User, user_id_for  # noqa: E402
from sandbox.redis_server import flush_keeping_claim, own_database  # noqa: E402
from sandbox.redis_trips import round_trips  # noqa: E402

RATE = 100  # requests a second
CONNECTIONS = 8
PATHS = ("/bench/bare", "/api/sync", "/api/me")
TARGET = 2.0
ORG = "00DPANE000000AAAA"
UID = user_id_for(ORG, "005PANE000000AAAA")
HOST = "localhost:3000"


def bench_app() -> Flask:
    """What gunicorn serves (``bench.pane_bench:bench_app()``): the product's app plus one bare route."""
    app = create_app()

    @app.get("/bench/bare")
    def bare() -> Any:
        return jsonify({"ok": True})

    return app


def settings(redis_url: str) -> dict[str, str]:
    """The environment of the app in gunicorn and in this process (the same keys, so tokens verify)."""
    return {"SIDEBAR_ENV": "production", "SECRET_KEY": "bench-secret-key-" + "x" * 32,
            "ENCRYPTION_KEYS": Fernet.generate_key().decode(), "REDIS_URL": redis_url, "KEY_PREFIX": "sspane:",
            "PUBLIC_BASE_URL": f"https://{HOST}", "SALESFORCE_CLIENT_ID": "x", "SALESFORCE_CLIENT_SECRET": "y",
            # The Salesforce check and the admin flag are answered from Redis during the run (see seed).
            "SALESFORCE_CHECK_SECONDS": "3600", "LOG_LEVEL": "WARNING"}


def seed(app: Flask) -> str:
    """A person with a running mailbox, its runs and quarantine; returns a bearer token."""
    with app.app_context():
        store = services().store
        flush_keeping_claim(store.redis)
        now = time.time()
        store.users.save(User(id=UID, org_id=ORG, sf_user_id="005PANE000000AAAA", username="alice@acme.example",
                              email="alice@acme.example", display_name="Alice Example",
                              instance_url="https://acme.my.salesforce.com", addin_mailbox="alice@acme.example",
                              addin_mailbox_verified=True, admin_checked_at=now, last_seen_at=now))
        store.mailboxes.ensure(UID, ORG)
        store.mailboxes.activate(UID, "exchange", "alice@acme.example")
        for n in range(12):
            run = {"id": f"r{n}", "started_at": "2026-12-01T10:00:00+00:00",
                   "finished_at": "2026-12-01T10:01:00+00:00", "status": "ok",
                   "counts": {"read": n, "written": n, "duplicates": 0, "filtered": 1, "quarantined": 0},
                   "error": None, "salesforce_calls": 2, "mailbox_calls": 3}
            store.runs.record(UID, run)
        store.mailboxes.update(UID, last_run=run)
        store.quarantine.add(UID, [{"key": f"q{n}", "reason": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                    "subject_hash": f"h{n}"} for n in range(3)])
        store.schedule.set_next(UID, now + 1200)
        # Checked just now: the next check is SALESFORCE_CHECK_SECONDS away, so no request asks Salesforce.
        store.once.first_use("salesforce-check", UID, 3600)
    with app.test_request_context():
        return issue_token(UID).token


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gunicorn(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """gunicorn as the Procfile runs it, serving :func:`bench_app`; waits until it answers."""
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "bench.pane_bench:bench_app()", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--threads", "4", "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, **env}, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/bench/bare", headers={"Host": HOST})
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError("gunicorn did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the gunicorn we started (its process group: the arbiter and its workers)."""
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def load(port: int, path: str, token: str, seconds: float) -> list[float]:
    """Latencies (ms) of ``RATE`` requests a second to ``path`` for ``seconds`` (open loop)."""
    local = threading.local()
    headers = {"Host": HOST, "Authorization": f"Bearer {token}"}
    times: list[float] = []

    def send() -> tuple[http.client.HTTPResponse, float]:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp, (time.perf_counter() - started) * 1000

    def one() -> None:
        try:
            resp, elapsed = send()
        except (http.client.RemoteDisconnected, ConnectionError):
            # gunicorn closed an idle keep-alive connection (after 2 s): a browser reconnects too.
            local.conn = None
            resp, elapsed = send()
        times.append(elapsed)
        if resp.status != 200:
            raise RuntimeError(f"{path} answered {resp.status}")
        if resp.getheader("Connection", "").lower() == "close":
            local.conn.close()
            local.conn = None

    total = int(RATE * seconds)
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        t0 = time.perf_counter()
        futures = []
        for i in range(total):
            wait = t0 + i / RATE - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            futures.append(pool.submit(one))
        for f in futures:
            f.result()
    return times


def p95(times: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def trips_per_request(app: Flask, token: str) -> dict[str, int]:
    """Redis round trips of one request of each path (in this process, through the Flask client)."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    env = {"wsgi.url_scheme": "https", "HTTP_HOST": HOST}
    counts: dict[str, int] = {}
    for path in PATHS[1:]:
        client.get(path, headers=headers, environ_base=env)  # warm: the pool's connection
        with round_trips() as trips:
            resp = client.get(path, headers=headers, environ_base=env)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        counts[path] = trips.count
    return counts


def run(quick: bool) -> dict[str, Any]:
    """Seed, start gunicorn, load each path in turn for the rounds; ratios of p95s."""
    rounds, seconds = (3, 2.0) if quick else (5, 5.0)
    with own_database() as redis_url:
        env = settings(redis_url)
        app = create_app(dict(env))
        token = seed(app)
        trips = trips_per_request(app, token)
        port = free_port()
        proc = start_gunicorn(env, port)
        try:
            for path in PATHS:
                load(port, path, token, 1.0)  # warm every worker and thread
            per_round: list[dict[str, float]] = []
            for _ in range(rounds):
                with app.app_context():
                    # The admin flag is kept five minutes: fresh, so no request asks Salesforce.
                    services().store.users.update(UID, admin_checked_at=time.time())
                per_round.append({path: p95(load(port, path, token, seconds)) for path in PATHS})
        finally:
            stop(proc)
        with app.app_context():
            flush_keeping_claim(services().redis)
    figures: dict[str, Any] = {"rounds": rounds, "seconds": seconds, "trips": trips,
                               "load": round(os.getloadavg()[0], 2)}
    for path in PATHS[1:]:
        ratios = [r[path] / r[PATHS[0]] for r in per_round]
        figures[path] = {"ratio": round(statistics.median(ratios), 2),
                         "spread": [round(min(ratios), 2), round(max(ratios), 2)],
                         "p95_ms": round(statistics.median(r[path] for r in per_round), 1),
                         "bare_p95_ms": round(statistics.median(r[PATHS[0]] for r in per_round), 1)}
    return figures


def table_rows(quick: bool) -> list[dict[str, Any]]:
    """The benchmark table's rows: P6 for /api/sync and for /api/me."""
    f = run(quick)
    rows = []
    for path in PATHS[1:]:
        p = f[path]
        rows.append({
            "id": "P6",
            "measure": f"pane API {path} p95 at {RATE} req/s ÷ a bare Flask route on the same gunicorn",
            "value": p["ratio"],
            "target": f"<= {TARGET:g}",
            "detail": f"{p['p95_ms']} vs {p['bare_p95_ms']} ms, median of {f['rounds']} x {f['seconds']:g} s "
                      f"[{p['spread'][0]}-{p['spread'][1]}]; {f['trips'][path]} Redis round trips a request; "
                      f"load {f['load']}",
        })
    return rows


def main() -> None:
    """Print the rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s instead of 5 of 5 s")
    args = parser.parse_args()
    for row in table_rows(args.quick):
        print(f"{row['id']}  {row['measure']}: {row['value']} (target {row['target']})\n    {row['detail']}")


if __name__ == "__main__":
    main()
