"""A simulated day of many mailboxes in virtual time: the real clock, schedule, queue and cadence; modelled runs.

What is real: the clock's tick (:func:`backend.jobs.schedule.run_tick`: the claim script, the one
``enqueue_many`` transaction into the real RQ queue), the schedule in Redis, the run's bookkeeping
(:meth:`RunsRepo.record`, the mailbox's ``last_run``) and the cadence (:func:`schedule_next`, from the
slot's planned start, quiet runs stretching the interval). What is modelled: the run itself. A run
against the fakes costs tens of milliseconds of CPU, so 50,000 mailboxes for a day of real runs would
take this 2-core machine most of a day; here ``workers`` worker slots take the queued jobs in order
(FIFO, as RQ does), each run lasting a drawn duration (short when nothing is new, longer when it
logs mail; busier in working hours), and virtual time moves one clock tick (60 s) at a time.

The day answers: the queue lag (a run's start minus its slot's planned start), whether any mailbox
was starved (went longer than its interval plus one base interval without a run), and whether the
process's and Redis's memory stay flat from the first hour to the last.
"""

from __future__ import annotations

import heapq
import random
import resource
import sys
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rq.job import Job

from backend.extensions import QUEUE_SYNC, Services
from backend.jobs.schedule import TICK_SECONDS, run_tick
from backend.store.users import User
from backend.sync.cadence import schedule_next

ORGS = 50


@dataclass
class DayConfig:
    """The simulated day's shape."""

    mailboxes: int = 50_000
    hours: float = 24.0
    workers: int = 80
    # Share of mailboxes that get mail at all; the rest only ever have quiet runs.
    active_share: float = 0.6
    # Chance that an active mailbox has something new on a run, in working hours and outside them.
    busy_day: float = 0.7
    busy_night: float = 0.05
    # Run durations in seconds: a run with nothing new, and one that logs mail.
    quiet_run: tuple[float, float] = (0.3, 2.0)
    busy_run: tuple[float, float] = (1.0, 8.0)
    start_hour: int = 0
    seed: int = 7


@dataclass
class DayFigures:
    """What the day measured (virtual seconds)."""

    runs: int = 0
    max_lag: float = 0.0
    lags: list[float] = field(default_factory=list)
    starved: int = 0
    never_ran: int = 0
    max_queue: int = 0
    hourly_rss_mb: list[float] = field(default_factory=list)
    hourly_redis_mb: list[float] = field(default_factory=list)
    hourly_runs: list[int] = field(default_factory=list)

    def p99_lag(self) -> float:
        """The 99th percentile of the queue lag."""
        ordered = sorted(self.lags)
        return ordered[int(0.99 * (len(ordered) - 1))] if ordered else 0.0


def _rss_mb() -> float:
    """This process's resident memory now (not the peak), in MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class Day:
    """Seeds the mailboxes, then plays the day tick by tick."""

    def __init__(self, svc: Services, config: DayConfig, t0: float) -> None:
        self.svc = svc
        self.config = config
        self.t0 = t0
        self.rng = random.Random(config.seed)
        self.mids = [f"day{i:06d}" for i in range(config.mailboxes)]
        self.active = {m for m in self.mids if self.rng.random() < config.active_share}
        self.last_start: dict[str, float] = {}
        self.waiting: deque[tuple[str, float]] = deque()
        self.free_at = [t0] * config.workers
        heapq.heapify(self.free_at)

    def seed(self) -> None:
        """Running mailboxes in ``ORGS`` orgs, first runs spread over one interval (as mass activation does)."""
        store = self.svc.store
        interval = self.svc.settings.SYNC_INTERVAL_SECONDS
        for i, mid in enumerate(self.mids):
            org = f"00DDAY{i % ORGS:05d}AAA"
            store.users.save(User(id=mid, org_id=org, sf_user_id=f"005D{i:011d}"))
            store.mailboxes.ensure(mid, org)
            store.mailboxes.activate(mid, "exchange", f"{mid}@acme.example")
        with store.redis.pipeline(transaction=False) as pipe:
            for i, mid in enumerate(self.mids):
                pipe.zadd(store.schedule.key, {mid: self.t0 + interval * i / len(self.mids)})
                if i % 5000 == 4999:
                    pipe.execute()
            pipe.execute()

    def _busy(self, mid: str, now: float) -> bool:
        hour = (self.config.start_hour + int((now - self.t0) // 3600)) % 24
        chance = self.config.busy_day if 8 <= hour < 18 else self.config.busy_night
        return mid in self.active and self.rng.random() < chance

    def _run(self, mid: str, start: float, figures: DayFigures) -> None:
        """One modelled run of ``mid`` starting at ``start``: its record, then the real cadence."""
        store, settings = self.svc.store, self.svc.settings
        planned = store.schedule.slot_start(mid, start)
        lag = max(0.0, start - planned) if planned is not None else 0.0
        figures.lags.append(lag)
        figures.max_lag = max(figures.max_lag, lag)
        previous = self.last_start.get(mid)
        mailbox = store.mailboxes.get(mid)
        interval = (mailbox.interval_seconds if mailbox is not None and mailbox.interval_seconds else
                    settings.SYNC_INTERVAL_SECONDS)
        if previous is not None and start - previous > interval + settings.SYNC_INTERVAL_SECONDS:
            figures.starved += 1
        self.last_start[mid] = start
        busy = self._busy(mid, start)
        low, high = self.config.busy_run if busy else self.config.quiet_run
        finish = start + self.rng.uniform(low, high)
        record = {"id": f"run{figures.runs}", "started_at": _iso(start), "finished_at": _iso(finish),
                  "duration_ms": int((finish - start) * 1000), "trigger": "schedule", "status": "ok",
                  "counts": {"read": 5 if busy else 0}, "salesforce_calls": 1 if busy else 0, "mailbox_calls": 3}
        store.runs.record(mid, record)
        store.mailboxes.update(mid, last_run=record, caught_up_at=start)
        schedule_next(store, settings, mid, busy, finish)
        heapq.heappush(self.free_at, finish)
        figures.runs += 1

    def _drain(self, now: float, figures: DayFigures) -> None:
        """Take queued jobs in order while a worker slot frees up before the next tick."""
        svc = self.svc
        queue = svc.queue(QUEUE_SYNC)
        while True:
            popped = svc.redis_raw.lpop(queue.key, 1000)
            if not popped:
                break
            ids = [p.decode() if isinstance(p, bytes) else str(p) for p in popped]
            self.waiting.extend((i, now) for i in ids)
        figures.max_queue = max(figures.max_queue, len(self.waiting))
        done: list[str] = []
        while self.waiting:
            job_id, queued_at = self.waiting[0]
            start = max(self.free_at[0], queued_at)
            if start >= now + TICK_SECONDS:
                break  # every worker is busy until the next tick
            heapq.heappop(self.free_at)
            self.waiting.popleft()
            self._run(job_id.removeprefix("sync-"), start, figures)
            done.append(job_id)
        if done:
            # The job is over: its hash goes, as a finished job's would (the claim checks for a live one).
            svc.redis_raw.delete(*[Job.key_for(j) for j in done])

    def play(self, progress: bool = False) -> DayFigures:
        """Tick through the day; figures per hour and overall (``progress``: a line to stderr each hour)."""
        figures = DayFigures()
        ticks = int(self.config.hours * 3600 // TICK_SECONDS)
        runs_before = 0
        for n in range(ticks):
            now = self.t0 + n * TICK_SECONDS
            # Free slots idle until now start no earlier than now.
            self.free_at = [max(t, now) for t in self.free_at]
            heapq.heapify(self.free_at)
            run_tick(self.svc, now)
            self._drain(now, figures)
            if (n + 1) % (3600 // TICK_SECONDS) == 0:
                info: dict[str, Any] = self.svc.redis.info("memory")  # type: ignore[assignment]
                figures.hourly_rss_mb.append(round(_rss_mb(), 1))
                figures.hourly_redis_mb.append(round(int(info["used_memory"]) / 1e6, 1))
                figures.hourly_runs.append(figures.runs - runs_before)
                runs_before = figures.runs
                if progress:
                    print(f"hour {len(figures.hourly_runs)}: runs {figures.hourly_runs[-1]} max lag "
                          f"{figures.max_lag:.0f} s rss {figures.hourly_rss_mb[-1]} MB", file=sys.stderr, flush=True)
        figures.never_ran = sum(1 for m in self.mids if m not in self.last_start)
        return figures
