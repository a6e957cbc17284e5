"""A real, small, time-compressed day: real ``rq worker`` processes run real syncs against the wire fakes.

The complement of :mod:`sandbox.day` (virtual time, modelled runs, 50,000 mailboxes): here nothing
of a run is modelled, at a scale this 2-core machine can play in minutes. What is real: the mailboxes
(many accounts on one fake per provider of :data:`sandbox.harness.HARNESSES`: EWS, Graph, Gmail, each
reached by the real connector through configuration), the fake Salesforce every run writes to, the
people's sign-in (the real Salesforce dialog), activation, the schedule and the clock's tick
(:func:`backend.jobs.schedule.run_tick`), RQ's queues, and ``K`` worker processes
(``rq worker -w backend.jobs.worker.Worker``, as the Procfile runs them, each job in a forked work horse).

Time is compressed two ways. The interval is ``SYNC_INTERVAL_SECONDS`` at its minimum, 60 s (30
times shorter than the default 30 minutes). The clock's minute cannot be set (``TICK_SECONDS`` is a
constant of the ``rq cron`` registration), so rather than change product code this module calls
``run_tick`` itself every ``tick_seconds`` (2 s: the minute compressed by the same factor 30)
instead of running ``rq cron``. Mail arrives while the day plays (the fakes' own ``add_email``).

Measured: the queue lag (a run's start minus its slot's planned start, and minus its job's
``enqueued_at``), mailboxes starved (a gap between two runs longer than the interval the cadence set
plus one base interval, a due time passed by more than an interval at the end, or no run at all),
every email logged exactly once in the fake Salesforce, and each worker's RSS (the parent, and the
largest work horse seen) in the first and the last interval.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from cryptography.fernet import Fernet
from flask import Flask
from rq.job import Job

from backend import create_app
from backend.connectors.google import REFRESH_SECRET
from backend.connectors.graph import CACHE_SECRET, MicrosoftAuth
from backend.connectors.mailbox import MailboxIdentity
from backend.extensions import services
from backend.jobs.schedule import run_tick
from backend.jobs.sync import enqueue_sync, job_id_for
from backend.store.runs import MAX_RUNS
from backend.sync.activation import activate
from sandbox import salesforce as fake_sf
from sandbox.harness import HARNESSES, ExchangeHarness, GmailHarness, GraphHarness, HarnessContext
from sandbox.https_client import HttpsClient
from sandbox.keepalive import KeepAliveFakeServer
from sandbox.login import login
from sandbox.salesforce_rest import data_of
from sandbox.tls import TestCA

ROOT = Path(__file__).resolve().parents[1]
RQ = str(Path(sys.executable).with_name("rq"))
PROVIDERS = tuple(HARNESSES)  # exchange, microsoft, google: mailbox i is on PROVIDERS[i % 3]
DOMAINS = {"exchange": "acme.example", "microsoft": "contoso.example", "google": "northwind-mail.example"}


@dataclass
class RealDayConfig:
    """The real day's shape."""

    mailboxes: int = 300
    workers: int = 3
    intervals: int = 10
    interval_seconds: int = 60  # SYNC_INTERVAL_SECONDS; 60 is the smallest the settings accept
    tick_seconds: float = 2.0  # the clock's minute, compressed as the interval is (1800 s -> 60 s)
    mail_per_interval: float = 0.5  # new emails per mailbox per interval, on average
    people: int = 40  # customer contacts in the fake Salesforce
    seed: int = 7
    catch_up_seconds: float = 180.0  # the most the end waits for the last mail to be logged


@dataclass
class RealDayFigures:
    """What the day measured (wall-clock seconds)."""

    runs: int = 0
    failed_runs: int = 0
    due_lags: list[float] = field(default_factory=list)
    queue_waits: list[float] = field(default_factory=list)
    starved: int = 0
    never_ran: int = 0
    unserved: int = 0  # mailboxes whose claimed slot had no run started by the end (their wait: a lag)
    max_gap_over_scheduled: float = 0.0
    emails_sent: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    rss_parent_mb: list[list[float]] = field(default_factory=list)  # per interval, per worker: the largest
    rss_horse_mb: list[float] = field(default_factory=list)  # per interval: the largest work horse seen
    runs_per_interval: list[int] = field(default_factory=list)
    setup_s: float = 0.0
    catch_up_s: float = 0.0
    truncated_histories: int = 0

    @staticmethod
    def worst(values: list[float]) -> float:
        """The largest value, 0 when none."""
        return max(values) if values else 0.0

    @staticmethod
    def p99(values: list[float]) -> float:
        """The 99th percentile, 0 when none."""
        ordered = sorted(values)
        return ordered[int(0.99 * (len(ordered) - 1))] if ordered else 0.0


@dataclass
class WorkerProcess:
    """One ``rq worker`` process, and the children it had before taking jobs (the scheduler)."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    resident: set[int] = field(default_factory=set)

    def rss(self) -> tuple[float, float]:
        """The parent's RSS now and the largest peak RSS (VmHWM) of its work horses alive now (MB; 0: none)."""
        try:
            parent = psutil.Process(self.proc.pid)
            mine = parent.memory_info().rss / 1e6
            children = parent.children(recursive=True)
        except psutil.NoSuchProcess:
            return 0.0, 0.0
        horse = 0.0
        for child in children:
            if child.pid in self.resident:
                continue
            horse = max(horse, peak_rss_mb(child.pid))
        return mine, horse

    def note_resident(self) -> None:
        """Remember the children it has now (RQ's scheduler process), so they are not counted as horses."""
        try:
            self.resident = {c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            self.resident = set()

    def stop(self) -> None:
        """Warm shutdown (SIGTERM to its group), then kill."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (``VmHWM``), in MB; 0 when it has gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1000
    except OSError:  # the horse finished while we looked
        pass
    return 0.0


def start_worker(config: dict[str, str], log_dir: Path, name: str, scheduler: bool) -> WorkerProcess:
    """The Procfile's worker with ``config`` as its environment (only one of them runs RQ's scheduler)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESFORCE_") and k != "REDIS_URL"}
    env.update(config, PYTHONPATH=str(ROOT))
    log_path = log_dir / f"worker-{name}.log"
    with open(log_path, "wb") as handle:
        proc = subprocess.Popen(
            [RQ, "worker", "-w", "backend.jobs.worker.Worker", *(["--with-scheduler"] if scheduler else []),
             "--url", config["REDIS_URL"], "--name", f"realday-{name}-{os.getpid()}", "interactive", "sync",
             "notify"],
            cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    return WorkerProcess(proc, log_path)


def _ts(text: str) -> float:
    """Epoch seconds of an ISO time (RQ writes a trailing Z; a time without a zone is UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def start_bound(record: dict[str, Any]) -> float:
    """The latest a run can have started: its record's times have one-second resolution, so lags are upper bounds."""
    started = _ts(record["started_at"]) + 1.0
    finished = record.get("finished_at")
    if isinstance(finished, str) and isinstance(record.get("duration_ms"), int):
        started = min(started, _ts(finished) + 1.0 - record["duration_ms"] / 1000)
    return started


class RealDay:
    """The fakes, the people and their mailboxes, the workers; then the day, tick by tick."""

    def __init__(self, config: RealDayConfig, redis_url: str, workdir: str) -> None:
        self.config = config
        self.workdir = Path(workdir)
        self.rng = random.Random(config.seed)
        self.ca = TestCA(workdir)
        cert = self.ca.issue("loopback")
        self.sf = fake_sf.FakeSalesforceState()
        self.sf_server = KeepAliveFakeServer(fake_sf.create_app(self.sf), cert).start()
        self.sf.base_url = self.sf_server.url
        context = HarnessContext(self.ca, cert)
        self.ews: ExchangeHarness = HARNESSES["exchange"](context)  # type: ignore[assignment]
        self.graph: GraphHarness = HARNESSES["microsoft"](context)  # type: ignore[assignment]
        self.gmail: GmailHarness = HARNESSES["google"](context)  # type: ignore[assignment]
        settings: dict[str, Any] = {
            "SIDEBAR_ENV": "production", "SECRET_KEY": "realday-secret-key-" + "x" * 32,
            "ENCRYPTION_KEYS": Fernet.generate_key().decode(), "REDIS_URL": redis_url, "KEY_PREFIX": "ssrealday:",
            "SALESFORCE_CLIENT_ID": self.sf.client_id, "SALESFORCE_CLIENT_SECRET": self.sf.client_secret,
            "SALESFORCE_LOGIN_URL": self.sf_server.url, "SALESFORCE_SANDBOX_URL": self.sf_server.url,
            "SALESFORCE_ALLOWED_HOSTS": f"{self.sf_server.host}:{self.sf_server.port}",
            "REQUIRE_MAILBOX_PROOF": "off", "LOG_LEVEL": "WARNING",
            "SYNC_INTERVAL_SECONDS": config.interval_seconds,
            **self.ews.settings_overrides(), **self.graph.settings_overrides(), **self.gmail.settings_overrides(),
        }
        self.env = {k: ("on" if v is True else "off" if v is False else str(v)) for k, v in settings.items()}
        self.app: Flask = create_app(self.env)
        self.app.test_client_class = HttpsClient
        self.people = [f"person{i:03d}@customer{i % 7}.example" for i in range(config.people)]
        self.mids: list[str] = []
        self.address: dict[str, str] = {}
        self.provider: dict[str, str] = {}
        self.expected: dict[str, set[str]] = {}
        self.last_mail: dict[str, float] = {}
        # Per mailbox: each slot the clock claimed (its planned start) -> when its run job was enqueued.
        self.slots: dict[str, dict[float, float]] = {}
        self.workers: list[WorkerProcess] = []

    # --- setup ------------------------------------------------------------------------------------

    def _mailbox_side(self, provider: str, address: str, n: int) -> tuple[dict[str, Any], dict[str, str]]:
        """An account on ``provider``'s fake as its own sign-up would make it; its connection and secrets."""
        if provider == "exchange":
            password = f"Pw-{n}-Exchange!"
            self.ews.state.add_user(address, password, account=f"ex{n}", display_name=f"Person {n}")
            return ({"login": address, "ews_url": self.ews.ews_url, "auth_type": "NTLM", "version": "15.1.2507.6",
                     "autodiscovered": False}, {"exchange_password": password})
        if provider == "microsoft":
            user = self.graph.ms.add_user(address, self.graph.user.tid, consented=True)
            self.graph.graph.mailbox(address)
            # On-behalf-of from a Nested App Authentication token, as the pane's sign-in does.
            grant = MicrosoftAuth(self.graph.settings).on_behalf_of(self.graph.ms.naa_token(address, user.tid),
                                                                    user.tid)
            return grant.connection("on_behalf_of"), {CACHE_SECRET: grant.cache}
        google = self.gmail.google
        google.add_user(address, display_name=f"Person {n}")
        self.gmail.gmail.mailbox(address)
        self.gmail.calendar.calendar(address)
        token = google.grant_offline(address)
        return {"scopes": sorted(google.refresh_tokens[token].scopes), "via": "consent"}, {REFRESH_SECRET: token}

    def setup(self) -> None:
        """Contacts in Salesforce; each person signs in through the dialog and connects a mailbox."""
        data = data_of(self.sf)
        for i, person in enumerate(self.people):
            data.add_contact(person, f"Customer {i}")
        client = self.app.test_client()
        with self.app.app_context():
            store = services().store
            for n in range(self.config.mailboxes):
                provider = PROVIDERS[n % len(PROVIDERS)]
                address = f"rd{n:05d}@{DOMAINS[provider]}"
                self.sf.add_user(address, f"sf-pw-{n}", email=address, name=f"Person {n}")
                # Each person signs in from a machine of their own (sign-in starts are limited per address).
                client.environ_base["REMOTE_ADDR"] = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
                session = login(client, self.ca.ca_path, mailbox=address, username=address, password=f"sf-pw-{n}")
                user = store.users.get(session.uid)
                assert user is not None, address
                connection, secrets = self._mailbox_side(provider, address, n)
                mailbox = activate(store, user, provider, MailboxIdentity(primary=address, aliases=frozenset()),
                                   connection, secrets)
                self.mids.append(mailbox.id)
                self.address[mailbox.id], self.provider[mailbox.id] = address, provider
                self.expected[mailbox.id], self.slots[mailbox.id] = set(), {}

    def start_workers(self) -> None:
        """``workers`` worker processes; waits until each has registered with RQ."""
        for k in range(self.config.workers):
            self.workers.append(start_worker(self.env, self.workdir, str(k), scheduler=k == 0))
        with self.app.app_context():
            raw = services().redis_raw
            deadline = time.monotonic() + 60
            while sum(1 for _ in raw.scan_iter("rq:worker:realday-*")) < len(self.workers):
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not start:\n" + "\n".join(
                        w.log_path.read_text(errors="replace")[-2000:] for w in self.workers))
                time.sleep(0.2)
        time.sleep(1.0)  # the scheduler's process is forked once the worker is up
        for worker in self.workers:
            worker.note_resident()

    # --- the day ----------------------------------------------------------------------------------

    def _add_mail(self, now: float, chance: float) -> int:
        """New inbound mail: each mailbox gets one with ``chance``; how many arrived."""
        added = 0
        for mid in self.mids:
            if self.rng.random() >= chance:
                continue
            person = self.people[self.rng.randrange(len(self.people))]
            address, n = self.address[mid], len(self.expected[mid])
            message_id = f"<rd-{mid[-10:]}-{n}@{person.split('@')[1]}>"
            fields: dict[str, Any] = {"subject": f"Question {n}", "sender": person, "to": [address],
                                      "body": f"About order {n}", "message_id": message_id,
                                      "when": datetime.fromtimestamp(now, UTC)}
            # The harnesses' add_email for their seeded mailbox, for this account on the same fake.
            provider = self.provider[mid]
            if provider == "exchange":
                self.ews.state.add_email(address, "inbox", **fields)
            elif provider == "microsoft":
                self.graph.graph.add_message(address, "inbox", **fields)
            else:
                self.gmail.gmail.add_message(address, ["INBOX", "UNREAD"], **fields)
            self.expected[mid].add(message_id)
            self.last_mail[mid] = now
            added += 1
        return added

    def _observe(self, tick_started: float) -> None:
        """After a tick: the slots it claimed (planned start) and when their jobs were enqueued."""
        svc = services()
        claims = svc.redis.hgetall(svc.store.schedule.claims_key)
        fresh = []
        for mid, claim in claims.items():
            planned = float(str(claim).partition(" ")[0])
            if mid in self.slots and planned not in self.slots[mid]:
                # Enqueued in this tick: no earlier than its start (the job's enqueued_at, read next, if it is
                # still there: a quick run may be over already, its hash gone with result_ttl=0).
                self.slots[mid][planned] = tick_started
                fresh.append((mid, planned))
        with svc.redis_raw.pipeline(transaction=False) as pipe:
            for mid, _ in fresh:
                pipe.hget(Job.key_for(job_id_for(mid)), "enqueued_at")
            stamps = pipe.execute()
        for (mid, planned), stamp in zip(fresh, stamps, strict=True):
            if stamp and _ts(stamp.decode()) >= tick_started:
                self.slots[mid][planned] = _ts(stamp.decode())

    def _sample_rss(self, start: float, end: float, figures: RealDayFigures) -> None:
        """Every 0.1 s until ``end``: each worker's RSS and its work horse's peak, the largest per interval."""
        figures.rss_parent_mb = [[0.0] * len(self.workers) for _ in range(self.config.intervals)]
        figures.rss_horse_mb = [0.0] * self.config.intervals
        while (now := time.time()) < end:
            interval = min(int((now - start) // self.config.interval_seconds), self.config.intervals - 1)
            for k, worker in enumerate(self.workers):
                parent, horse = worker.rss()
                figures.rss_parent_mb[interval][k] = round(max(figures.rss_parent_mb[interval][k], parent), 1)
                figures.rss_horse_mb[interval] = round(max(figures.rss_horse_mb[interval], horse), 1)
            time.sleep(0.1)

    def play(self) -> RealDayFigures:
        """Set up, play ``intervals`` intervals, catch up on the last mail, and measure."""
        figures = RealDayFigures()
        began = time.monotonic()
        self.setup()
        self.start_workers()
        figures.setup_s = round(time.monotonic() - began, 1)
        cfg = self.config
        chance = cfg.mail_per_interval * cfg.tick_seconds / cfg.interval_seconds
        with self.app.app_context():
            svc = services()
            start = time.time()
            end = start + cfg.intervals * cfg.interval_seconds
            # First runs spread over one interval from now (as mass activation spreads them), not from
            # activation: the setup's minutes would otherwise show as lag.
            for n, mid in enumerate(self.mids):
                svc.store.schedule.set_next(mid, start + cfg.interval_seconds * n / len(self.mids))
            # Horses live a fraction of a second: sampled ten times a second, beside the tick.
            sampler = threading.Thread(target=self._sample_rss, args=(start, end, figures), daemon=True)
            sampler.start()
            tick = 0
            while (now := time.time()) < end:
                run_tick(svc, now)
                self._observe(now)
                figures.emails_sent += self._add_mail(now, chance)
                tick += 1
                time.sleep(max(0.0, start + tick * cfg.tick_seconds - time.time()))
            sampler.join()
            self._measure(svc, start, end, figures)
            figures.catch_up_s = round(self._catch_up(svc, end), 1)
            self._count_logged(figures)
        return figures

    def _measure(self, svc: Any, start: float, end: float, figures: RealDayFigures) -> None:
        """Lags and starvation from the run records of the window ``[start, end)``."""
        base = self.config.interval_seconds
        figures.runs_per_interval = [0] * self.config.intervals
        for mid in self.mids:
            history = svc.store.runs.recent(mid)
            figures.truncated_histories += len(history) >= MAX_RUNS
            runs = sorted((start_bound(r), r) for r in history if r.get("started_at"))
            runs = [(s, r) for s, r in runs if start <= s < end]
            figures.never_ran += not runs
            previous: tuple[float, float] | None = None
            for started, record in runs:
                figures.runs += 1
                figures.failed_runs += record.get("status") != "ok"
                figures.runs_per_interval[min(int((started - start) // base), self.config.intervals - 1)] += 1
                planned = max((p for p in self.slots[mid] if p <= started), default=None)
                if planned is None:
                    continue  # not a slot of the clock's (none: the day's runs all come from it)
                figures.due_lags.append(max(0.0, started - planned))
                figures.queue_waits.append(max(0.0, started - self.slots[mid][planned]))
                if previous is not None and planned > previous[1]:
                    scheduled = planned - previous[1]  # the cadence's interval, quiet runs stretched
                    gap = started - previous[0]
                    figures.max_gap_over_scheduled = max(figures.max_gap_over_scheduled, gap / scheduled)
                    figures.starved += gap > scheduled + base
                previous = (started, planned)
            # A slot claimed and not yet served at the end (still queued, or running and not recorded yet)
            # has waited at least until the end: counted, so a backlog cannot hide by never starting.
            waiting = [p for p in self.slots[mid] if previous is None or p > previous[1]]
            if waiting:
                oldest = min(waiting)
                figures.due_lags.append(end - oldest)
                figures.unserved += 1
                figures.starved += end - oldest > base
            else:
                due = svc.store.schedule.next_of(mid)
                # Due for more than an interval at the end and never claimed: starved too.
                figures.starved += due is not None and due < end - base

    def _catch_up(self, svc: Any, end: float) -> float:
        """Stop the mail, then let every mailbox read its last email (Sync now for a stretched interval)."""
        began = time.monotonic()
        for mid, last in self.last_mail.items():
            latest = svc.store.runs.recent(mid, 1)
            if not latest or _ts(latest[0]["started_at"]) <= last:
                enqueue_sync(mid)
        deadline = began + self.config.catch_up_seconds
        while time.monotonic() < deadline:
            run_tick(svc, time.time())
            behind = [mid for mid, last in self.last_mail.items() if not self._caught_up(svc, mid, last)]
            if not behind:
                break
            for mid in behind:  # a failed run's retry, or a run that began before the mail: once more
                enqueue_sync(mid)
            time.sleep(1.0)
        return time.monotonic() - began

    @staticmethod
    def _caught_up(svc: Any, mid: str, last_mail: float) -> bool:
        from backend.jobs.sync import job_status

        latest = svc.store.runs.recent(mid, 1)
        return bool(latest) and latest[0].get("status") == "ok" and _ts(latest[0]["started_at"]) > last_mail \
            and job_status(mid) is None

    def _count_logged(self, figures: RealDayFigures) -> None:
        """Every email sent, logged once in the fake Salesforce: lost, duplicated, unexpected."""
        logged = Counter(m["MessageIdentifier"] for m in data_of(self.sf).all("EmailMessage"))
        expected = set().union(*self.expected.values()) if self.expected else set()
        figures.lost = len(expected - set(logged))
        figures.duplicated = sum(1 for n in logged.values() if n > 1)
        figures.unexpected = len(set(logged) - expected)

    def close(self) -> None:
        """Stop the workers and the fakes."""
        for worker in self.workers:
            worker.stop()
        for harness in (self.ews, self.graph, self.gmail):
            harness.close()
        self.sf_server.stop()

    def worker_logs(self) -> str:
        """The tail of each worker's output (for a failure's message)."""
        return "\n".join(f"--- {w.log_path.name}\n{w.log_path.read_text(errors='replace')[-3000:]}"
                         for w in self.workers)
