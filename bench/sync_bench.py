"""Sync benchmark (not a timed test): Salesforce calls for a backfill, and the clock's cost per due mailbox.

1. Backfill: a mailbox (real connector against its wire-level fake) holding ``--emails`` emails to
   and from ``--people`` Contacts and Leads in the fake Salesforce; one run of the engine, in this
   process, the fakes served from processes of their own (``bench/fakes.py``). Prints Salesforce
   calls made against the minimum the limits allow (record writes ÷ 200 plus the lookups), mail
   server calls, the run's CPU per item (this process's CPU: the fakes' is not in it), and the
   calls of a second run with nothing new (must be 0).
2. Clock: ``--due`` mailboxes due at once among ``--idle`` scheduled later; one tick, timed.

Run from the repository root:
    REDIS_URL=redis://127.0.0.1:6379/6 .venv/bin/python bench/sync_bench.py
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import logging
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cryptography.fernet import Fernet  # noqa: E402

from backend import create_app  # noqa: E402
from backend.connectors.salesforce import (  # noqa: E402
    COLLECTION_MAX,
    COMPOSITE_MAX_HEAVY,
    EMAIL_LOOKUP_PREFIX,
    chunk_in_list,
)
from backend.extensions import QUEUE_NAMES, services  # noqa: E402
from backend.jobs import worker as worker_module  # noqa: E402
from backend.jobs.schedule import run_tick  # noqa: E402
from backend.store.users import User  # noqa: E402
from bench.bare import bare_download  # noqa: E402
from bench.fakes import BenchMailbox, BenchSalesforce, process_cpu_seconds  # noqa: E402
from sandbox.harness import HARNESSES  # noqa: E402
from sandbox.https_client import HttpsClient  # noqa: E402
from sandbox.login import login  # noqa: E402
from sandbox.redis_server import own_database  # noqa: E402
from sandbox.serve_process import FakesProcess  # noqa: E402
from sandbox.tls import TestCA  # noqa: E402

API_VERSION = "62.0"
# The names people use for a provider, beside the provider map's ("gmail" is "google").
PROVIDER_ALIASES = {"gmail": "google"}


def minimum_lookups(addresses: list[str], message_ids: list[str]) -> int:
    """SOQL queries the lookups need at the least: Contact and Lead by address, EmailMessage by Message-ID."""
    path = f"/services/data/v{API_VERSION}/query"
    by_address = len(chunk_in_list("SELECT Id, Email FROM Contact WHERE Email IN ", sorted(addresses), path=path))
    by_id = len(chunk_in_list(EMAIL_LOOKUP_PREFIX, sorted(message_ids), path=path))
    return 2 * by_address + by_id


# A Composite request: at most 25 subrequests, 5 of them collections (200 records) or queries; the
# other 20 may each create one record.
COMPOSITE_SUBREQUESTS = 25
SINGLE_RECORD_SLOTS = COMPOSITE_SUBREQUESTS - COMPOSITE_MAX_HEAVY


def composite_lower_bound(records: int, queries: int) -> int:
    """The fewest Composite calls that can carry ``records`` creates and ``queries`` look-ups (the true lower bound)."""
    calls = 1
    while COMPOSITE_MAX_HEAVY * calls < queries + math.ceil(
            max(0, records - SINGLE_RECORD_SLOTS * calls) / COLLECTION_MAX):
        calls += 1
    return calls


def rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def backfill(args: argparse.Namespace, ca: TestCA, cert: Any, redis_url: str) -> dict[str, Any]:
    """Seed, run once, run again; returns the figures (the fakes answer from a process of their own)."""
    salesforce = FakesProcess(BenchSalesforce, cert).start()
    mailbox = FakesProcess(BenchMailbox, args.provider, ca.ca_path, cert).start()
    # The engine runs as in a work horse (its garbage collector thresholds); the bare download
    # below runs under the same.
    gc_before = gc.get_threshold()
    tune_gc = getattr(worker_module, "tune_gc_for_jobs", None)
    if callable(tune_gc):
        tune_gc()
    try:
        info = {**salesforce.call("info"), **mailbox.call("info")}
        config = {
            "SIDEBAR_ENV": "production", "SECRET_KEY": "bench-secret-key-" + "x" * 32,
            "ENCRYPTION_KEYS": Fernet.generate_key().decode(), "REDIS_URL": redis_url, "KEY_PREFIX": "ssbench:",
            "SALESFORCE_CLIENT_ID": info["sf_client_id"], "SALESFORCE_CLIENT_SECRET": info["sf_client_secret"],
            "SALESFORCE_LOGIN_URL": info["sf_url"], "SALESFORCE_SANDBOX_URL": info["sf_url"],
            "SALESFORCE_ALLOWED_HOSTS": f"{info['sf_host']}:{info['sf_port']}", "OUTBOUND_CA_BUNDLE": ca.ca_path,
            "REQUIRE_MAILBOX_PROOF": "off", "LOG_LEVEL": "WARNING", "BACKFILL_DAYS": "6",
            **({"SYNC_BATCH_ITEMS": str(args.batch_items)} if args.batch_items else {}),
            **info["settings_overrides"],
        }
        app = create_app(config)
        app.test_client_class = HttpsClient
        session = login(app.test_client(), ca.ca_path, mailbox=info["address"])
        seed_started = time.monotonic()
        people = salesforce.call("seed", args.people)
        message_ids = mailbox.call("seed", args.emails, args.people)
        seeded_in = time.monotonic() - seed_started
        with app.app_context():
            store = services().store
            for name, value in mailbox.call("secrets").items():
                store.secrets.put("mailbox", session.uid, name, value)
            store.mailboxes.activate(session.uid, info["provider"], info["address"], frozenset(info["aliases"]),
                                     info["connection"])
            salesforce.call("reset_calls")
            mail_before = mailbox.call("requests")
            units_before = mailbox.call("quota_units")  # Gmail: units as Google counts them
            # The run's CPU is this whole process's (the engine and its reader thread); the fakes
            # answer from their own processes and are not in it.
            profiler = cProfile.Profile() if getattr(args, "profile", None) else None
            fakes0 = process_cpu_seconds(salesforce.pid, mailbox.pid)
            cpu0, wall0 = time.process_time(), time.monotonic()
            if profiler is not None:
                profiler.enable()
            record = services().engine.run(session.uid, interactive=True)
            if profiler is not None:
                profiler.disable()
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            fakes1 = process_cpu_seconds(salesforce.pid, mailbox.pid)
            if profiler is not None:
                profiler.dump_stats(args.profile)  # the figures of a profiled run are not the record
            mail_calls = mailbox.call("requests") - mail_before
            units_after = mailbox.call("quota_units")
            units = units_after - units_before if units_after is not None else None
            sf = salesforce.call("summary")
            written_records = sf["records_written"]
            salesforce.call("reset_calls")
            mail_before_quiet = mailbox.call("requests")
            quiet = services().engine.run(session.uid, interactive=True)
            quiet_mail_requests = mailbox.call("requests") - mail_before_quiet
        # The baseline, in the same run: the client library alone reading the same items from the same fakes.
        bare = bare_download(mailbox.call("bare_target"), 6)
        # What the machine's cores allow: the fakes need CPU of their own on the same cores as the
        # run (the real services' is elsewhere), so the run cannot take less than all of it shared out.
        fakes_cpu = fakes1 - fakes0 if fakes0 is not None and fakes1 is not None else None
        cores = os.cpu_count() or 1
        floor = (cpu + fakes_cpu) / cores if fakes_cpu is not None else None
        addresses = sorted(set(people))
        lookups_min = minimum_lookups(addresses, message_ids)
        minimum = math.ceil(written_records / COLLECTION_MAX) + lookups_min
        # Stricter: a Composite request carries 5 collections (1,000 records) or 5 queries as one call.
        per_call = COLLECTION_MAX * COMPOSITE_MAX_HEAVY
        composite_bound = math.ceil(written_records / per_call + lookups_min / COMPOSITE_MAX_HEAVY)
        counts = record["counts"]
        # With the rule "a record travels with its relations" (every seeded email has one sender
        # relation), a request takes at most 2 x 200 emails and their 2 x 200 relations.
        paired_per_call = (COMPOSITE_MAX_HEAVY - 1) // 2 * COLLECTION_MAX
        paired_bound = math.ceil(counts["emails_written"] / paired_per_call) + math.ceil(
            lookups_min / COMPOSITE_MAX_HEAVY)
        lower_bound = composite_lower_bound(written_records, lookups_min)
        read = max(1, counts["read"])
        return {
            "provider": info["provider"],
            "lower_bound": lower_bound,
            "ratio_to_lower_bound": round(record["salesforce_calls"] / lower_bound, 3),
            "bare": bare,
            "wall_ratio": round(wall / bare["seconds"], 2) if bare else None,
            "cpu_ratio": round(1000 * cpu / read / max(bare["cpu_ms_per_item"], 1e-6), 2) if bare else None,
            "quiet_run_mailbox_http_requests": quiet_mail_requests,
            "salesforce_fake_seconds": round(sf["answer_seconds"], 2),
            "run_cpu_seconds": round(cpu, 2),
            "fakes_cpu_seconds": round(fakes_cpu, 2) if fakes_cpu is not None else None,
            "cores": cores,
            "floor_ratio": round(floor / bare["seconds"], 2) if bare and floor is not None else None,
            # The run's own CPU against the bare wall time: its two threads share one GIL.
            "run_cpu_ratio_to_bare_wall": round(cpu / bare["seconds"], 2) if bare else None,
            "rss_peak_mb": rss_mb(),
            "emails": args.emails,
            "people": args.people,
            "seeded_seconds": round(seeded_in, 1),
            "written_emails": counts["emails_written"],
            "written_records": written_records,
            "salesforce_calls": record["salesforce_calls"],
            "salesforce_write_calls": sf["write_calls"],
            "salesforce_lookup_calls": sf["lookup_calls"],
            "soql_queries": sf["queries"],
            "minimum_calls": minimum,
            "minimum_breakdown": f"{written_records} records / 200 = {math.ceil(written_records / 200)} + "
                                 f"{lookups_min} lookup queries",
            "ratio_to_minimum": round(record["salesforce_calls"] / minimum, 3),
            "composite_bound": composite_bound,
            "ratio_to_composite_bound": round(record["salesforce_calls"] / composite_bound, 3),
            "paired_bound": paired_bound,
            "ratio_to_paired_bound": round(record["salesforce_calls"] / paired_bound, 3),
            "mailbox_calls": record["mailbox_calls"],
            "mailbox_http_requests": mail_calls,
            "mailbox_calls_per_1000": round(1000 * record["mailbox_calls"] / max(1, counts["read"]), 1),
            "quota_units": units,
            "quota_units_per_1000": round(1000 * units / max(1, counts["read"]), 1) if units is not None else None,
            "run_seconds": round(wall, 2),
            "worker_cpu_ms_per_item": round(1000 * cpu / max(1, counts["read"]), 3),
            "quiet_run_salesforce_calls": quiet["salesforce_calls"],
            "quiet_run_mailbox_calls": quiet["mailbox_calls"],
            "duplicates": counts["duplicates"],
            "filtered": counts["filtered_by"],
        }
    finally:
        mailbox.stop()
        salesforce.stop()
        gc.set_threshold(*gc_before)
        # A work horse ends with its job, and what the job left goes with it; here the next
        # backfill shares the process, so its garbage is collected now (with the horse's rarer
        # old-generation collections it would otherwise raise the next backfill's peak).
        gc.collect()


def clock(args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    """Seed due and idle mailboxes, run one tick, time it."""
    config = {"SIDEBAR_ENV": "production", "SECRET_KEY": "bench-secret-key-" + "x" * 32,
              "ENCRYPTION_KEYS": Fernet.generate_key().decode(), "REDIS_URL": redis_url, "KEY_PREFIX": "ssclock:",
              "SALESFORCE_CLIENT_ID": "x", "SALESFORCE_CLIENT_SECRET": "y", "LOG_LEVEL": "WARNING"}
    app = create_app(config)
    with app.app_context():
        svc = services()
        store = svc.store
        now = time.time()
        for i in range(args.due):
            uid = f"due{i:05d}"
            store.users.save(User(id=uid, org_id=f"00DORG{i % 50:03d}", sf_user_id=f"005{i:05d}"))
            store.mailboxes.ensure(uid, f"00DORG{i % 50:03d}")
            store.mailboxes.activate(uid, "exchange", f"{uid}@acme.example")
            store.schedule.set_next(uid, now - 5)
        with store.redis.pipeline(transaction=False) as pipe:
            for i in range(args.idle):
                pipe.zadd(store.schedule.key, {f"idle{i:06d}": now + 60 + i})
            pipe.execute()
        started = time.perf_counter()
        result = run_tick(svc, time.time())
        elapsed = time.perf_counter() - started
        queued = sum(svc.queue(name).count for name in QUEUE_NAMES)
        empty = time.perf_counter()
        second = run_tick(svc, time.time())
        empty_ms = (time.perf_counter() - empty) * 1000
        for name in QUEUE_NAMES:
            svc.queue(name).empty()
    return {
        "due": result["due"], "idle_scheduled": args.idle, "queued": queued,
        "tick_ms": round(elapsed * 1000, 1), "ms_per_due_mailbox": round(elapsed * 1000 / max(1, result["due"]), 3),
        "tick_with_nothing_due_ms": round(empty_ms, 2), "second_tick_due": second["due"],
    }


def backfills(provider: str, emails: int, repeat: int = 1, batch_items: int = 0) -> list[dict[str, Any]]:
    """``repeat`` backfills of ``emails`` for ``provider``, each into an emptied database (fresh fakes each time)."""
    import redis

    from sandbox.redis_server import flush_keeping_claim

    args = argparse.Namespace(emails=emails, people=200, provider=PROVIDER_ALIASES.get(provider, provider),
                              batch_items=batch_items)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    tmp = tempfile.mkdtemp(prefix="sync-bench-")
    results = []
    try:
        with own_database() as url:
            ca = TestCA(tmp)
            cert = ca.issue("loopback")
            client = redis.Redis.from_url(url)
            for _ in range(repeat):
                flush_keeping_claim(client)
                results.append(backfill(args, ca, cert, url))
            client.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def main() -> None:
    """Run both parts and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--due", type=int, default=2000)
    parser.add_argument("--idle", type=int, default=50_000)
    parser.add_argument("--provider", default="microsoft", choices=sorted({*HARNESSES, *PROVIDER_ALIASES}))
    parser.add_argument("--batch-items", type=int, default=0, help="SYNC_BATCH_ITEMS (default: the setting's)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--profile", default="", help="write the backfill run's cProfile stats to this file")
    parser.add_argument("--repeat", type=int, default=1, help="backfills in a row (memory must stay flat)")
    args = parser.parse_args()
    args.provider = PROVIDER_ALIASES.get(args.provider, args.provider)
    # The fakes' request logs would drown the figures.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    tmp = tempfile.mkdtemp(prefix="sync-bench-")
    try:
        with own_database() as url:
            ca = TestCA(tmp)
            cert = ca.issue("loopback")
            figures = {"backfill": backfill(args, ca, cert, url), "clock": clock(args, url)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.repeat > 1:
        again = backfills(args.provider, args.emails, args.repeat - 1, args.batch_items)
        figures["memory_mb"] = [figures["backfill"]["rss_peak_mb"], *(r["rss_peak_mb"] for r in again)]
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    b, c = figures["backfill"], figures["clock"]
    print(f"Backfill ({b['provider']}): {b['emails']} emails, {b['people']} contacts and leads")
    print(f"  Salesforce calls made      {b['salesforce_calls']} ({b['salesforce_write_calls']} write, "
          f"{b['salesforce_lookup_calls']} lookup/describe; {b['soql_queries']} SOQL queries inside)")
    print(f"  minimum the limits allow   {b['minimum_calls']} ({b['minimum_breakdown']})")
    print(f"  ratio                      {b['ratio_to_minimum']}")
    print(f"  true lower bound           {b['lower_bound']} (25 subrequests a call: 5 collections or queries, "
          f"20 single records); ratio {b['ratio_to_lower_bound']} (target <= 1.2)")
    print(f"  Composite-aware bound      {b['composite_bound']} (records / 1000 + lookup queries / 5); "
          f"ratio {b['ratio_to_composite_bound']}")
    print(f"  no-split bound             {b['paired_bound']} (emails / 400 + lookup queries / 5); "
          f"ratio {b['ratio_to_paired_bound']}")
    print(f"  records written            {b['written_records']} ({b['written_emails']} EmailMessages)")
    print(f"  mailbox calls              {b['mailbox_calls']} (HTTP requests seen by the fake: "
          f"{b['mailbox_http_requests']})")
    print(f"  mailbox calls per 1,000    {b['mailbox_calls_per_1000']} (items read)")
    if b["quota_units"] is not None:
        print(f"  quota units                {b['quota_units']} = {b['quota_units_per_1000']} per 1,000 items")
    print(f"  worker CPU per item        {b['worker_cpu_ms_per_item']} ms (run wall time {b['run_seconds']} s)")
    print(f"  next run, nothing new      {b['quiet_run_salesforce_calls']} Salesforce calls, "
          f"{b['quiet_run_mailbox_calls']} mailbox calls")
    if b["bare"]:
        print(f"  bare download              {b['bare']['seconds']} s, {b['bare']['cpu_ms_per_item']} ms CPU per item "
              f"({b['bare']['items']} items)")
        print(f"  run ÷ bare download        wall {b['wall_ratio']} (target <= 1.5), CPU per item {b['cpu_ratio']} "
              f"(target <= 2)")
    print(f"  fake Salesforce busy       {b['salesforce_fake_seconds']} s of the run (its own process)")
    print(f"  CPU of the run             {b['run_cpu_seconds']} s here ({b['run_cpu_ratio_to_bare_wall']} x the bare "
          f"wall, one GIL), {b['fakes_cpu_seconds']} s in the fakes; on {b['cores']} cores wall ÷ bare cannot go "
          f"under {b['floor_ratio']}")
    print(f"  peak memory                {b['rss_peak_mb']} MB")
    if "memory_mb" in figures:
        print(f"  peak memory per backfill   {' / '.join(str(m) for m in figures['memory_mb'])} MB")
    print(f"Clock: {c['due']} mailboxes due among {c['idle_scheduled']} scheduled later")
    print(f"  one tick                   {c['tick_ms']} ms = {c['ms_per_due_mailbox']} ms per due mailbox "
          f"({c['queued']} runs queued)")
    print(f"  tick with nothing due      {c['tick_with_nothing_due_ms']} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
