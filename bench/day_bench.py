"""A simulated day of 50,000 mailboxes (issue 16, "Load"): queue lag, starvation, memory first hour to last.

The clock's real tick, the real schedule, RQ queue and cadence, in virtual time; the runs themselves
are modelled (``sandbox/day.py`` says what is real and what is not, and why).

Run from the repository root:
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/day_bench.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cryptography.fernet import Fernet  # noqa: E402

from backend import create_app  # noqa: E402
from backend.extensions import services  # noqa: E402
from sandbox.day import Day, DayConfig  # noqa: E402
from sandbox.redis_server import flush_keeping_claim, own_database  # noqa: E402


def simulate(redis_url: str, config: DayConfig, progress: bool = False) -> dict[str, Any]:
    """Seed and play one day on ``redis_url``; the figures as a dict."""
    app = create_app({"SIDEBAR_ENV": "production", "SECRET_KEY": "bench-secret-key-" + "x" * 32,
                      "ENCRYPTION_KEYS": Fernet.generate_key().decode(), "REDIS_URL": redis_url,
                      "KEY_PREFIX": "ssdaybench:", "SALESFORCE_CLIENT_ID": "x", "SALESFORCE_CLIENT_SECRET": "y",
                      "LOG_LEVEL": "WARNING"})
    with app.app_context():
        svc = services()
        interval = int(svc.settings.SYNC_INTERVAL_SECONDS)
        flush_keeping_claim(svc.redis)
        t0 = time.time()
        day = Day(svc, config, t0)
        started = time.perf_counter()
        day.seed()
        seeded = time.perf_counter() - started
        figures = day.play(progress)
        played = time.perf_counter() - started - seeded
        flush_keeping_claim(svc.redis)
    first, last = figures.hourly_rss_mb[0], figures.hourly_rss_mb[-1]
    return {
        "mailboxes": config.mailboxes, "hours": config.hours, "workers": config.workers, "interval": interval,
        "runs": figures.runs, "max_lag_s": round(figures.max_lag, 1), "p99_lag_s": round(figures.p99_lag(), 1),
        "median_lag_s": round(statistics.median(figures.lags), 1) if figures.lags else 0.0,
        "starved": figures.starved, "never_ran": figures.never_ran, "max_queue": figures.max_queue,
        "rss_first_mb": first, "rss_last_mb": last, "rss_growth": round(last / first, 3),
        "redis_first_mb": figures.hourly_redis_mb[0], "redis_last_mb": figures.hourly_redis_mb[-1],
        "hourly_runs": figures.hourly_runs, "seed_s": round(seeded, 1), "play_s": round(played, 1),
    }


def run(quick: bool, progress: bool = False) -> dict[str, Any]:
    """The day on a database of our own (``quick``: 5,000 mailboxes for 6 hours)."""
    config = DayConfig(mailboxes=5000, hours=6, workers=8) if quick else DayConfig()
    with own_database() as redis_url:
        return simulate(redis_url, config, progress)


def table_rows(quick: bool) -> list[dict[str, Any]]:
    """The table's rows: L1 lag, L2 starvation, L3 memory."""
    f = run(quick)
    shape = f"{f['mailboxes']} mailboxes, {f['hours']:g} h virtual, {f['workers']} workers, {f['runs']} runs"
    return [
        {"id": "L1", "measure": "simulated day: worst queue lag ÷ the interval", "target": "< 1",
         "value": f"{f['max_lag_s'] / f['interval']:.3f}",
         "detail": f"worst {f['max_lag_s']} s, p99 {f['p99_lag_s']} s, median {f['median_lag_s']} s; {shape}"},
        {"id": "L2", "measure": "simulated day: mailboxes starved (a gap > their interval + one interval)",
         "value": f"{f['starved']} (never ran: {f['never_ran']})", "target": "0",
         "detail": f"largest queue {f['max_queue']}; runs per hour {f['hourly_runs'][0]} .. {f['hourly_runs'][-1]}"},
        {"id": "L3", "measure": "simulated day: memory, last hour ÷ first hour", "target": "≤ 1.1",
         "value": f"{f['rss_growth']:.2f}",
         "detail": f"RSS {f['rss_first_mb']} -> {f['rss_last_mb']} MB; Redis {f['redis_first_mb']} -> "
                   f"{f['redis_last_mb']} MB; played in {f['play_s']} s"},
    ]


def main() -> None:
    """Simulate and print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5,000 mailboxes for 6 virtual hours")
    parser.add_argument("--mailboxes", type=int, help="how many mailboxes (default 50,000)")
    parser.add_argument("--hours", type=float, help="virtual hours (default 24)")
    parser.add_argument("--start-hour", type=int, default=0, help="the virtual clock's hour at the start")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    config = DayConfig(mailboxes=5000, hours=6, workers=8) if args.quick else DayConfig()
    config.mailboxes = args.mailboxes or config.mailboxes
    config.hours = args.hours or config.hours
    config.start_hour = args.start_hour
    with own_database() as redis_url:
        figures = simulate(redis_url, config, progress=not args.json)
    print(json.dumps(figures, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
