"""Run history: the latest run records of each mailbox (counts, codes and times, never content)."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from backend.store.batch import Batch, Deferred
from backend.store.keys import Keys

MAX_RUNS = 20
HOUR = 3600


class RunHistoryRepo:
    """The latest run records per mailbox (``P runs:{mid}``), newest first, and each org's hourly totals."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def record(self, mid: str, run: dict[str, Any]) -> None:
        """Keep a run record (the newest first, at most :data:`MAX_RUNS`)."""
        key = self._keys("runs", mid)
        org = self._r.hget(self._keys("mailbox", mid), "org_id")
        with self._r.pipeline() as pipe:
            pipe.lpush(key, json.dumps(run, separators=(",", ":"), sort_keys=True))
            pipe.ltrim(key, 0, MAX_RUNS - 1)
            if org:
                # The org's runs and failures by hour, for the console's last 24 h (old hours dropped).
                hour = int(time.time() // HOUR)
                totals = self._keys("runtotals", json.loads(org))
                pipe.hincrby(totals, f"{hour}:runs", 1)
                if run.get("status") == "error":
                    pipe.hincrby(totals, f"{hour}:failures", 1)
                pipe.hdel(totals, f"{hour - 25}:runs", f"{hour - 25}:failures")
                pipe.expire(totals, 2 * 24 * HOUR)
            pipe.execute()

    def org_totals(self, org_id: str, now: float | None = None) -> tuple[int, int]:
        """(runs, failed runs) of the org's mailboxes in the last 24 hours (by whole hours)."""
        hour = int((time.time() if now is None else now) // HOUR)
        data = self._r.hgetall(self._keys("runtotals", org_id))
        runs = failures = 0
        for name, value in data.items():
            at, _, kind = str(name).partition(":")
            if at.isdigit() and hour - 24 < int(at) <= hour:
                if kind == "runs":
                    runs += int(value)
                else:
                    failures += int(value)
        return runs, failures

    def recent_in(self, batch: Batch, mid: str, count: int = MAX_RUNS) -> Deferred[list[dict[str, Any]]]:
        """:meth:`recent`, read with the batch."""
        batch.pipe.lrange(self._keys("runs", mid), 0, max(0, count - 1))
        return batch.defer(lambda rows: [json.loads(raw) for raw in rows])

    def recent(self, mid: str, count: int = MAX_RUNS) -> list[dict[str, Any]]:
        """The latest run records, newest first."""
        return [json.loads(raw) for raw in self._r.lrange(self._keys("runs", mid), 0, max(0, count - 1))]
