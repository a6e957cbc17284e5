"""Run history: the latest run records of each mailbox (counts, codes and times, never content)."""

from __future__ import annotations

import json
from typing import Any

import redis

from backend.store.keys import Keys

MAX_RUNS = 20


class RunHistoryRepo:
    """The latest run records per mailbox (``P runs:{mid}``), newest first."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def record(self, mid: str, run: dict[str, Any]) -> None:
        """Keep a run record (the newest first, at most :data:`MAX_RUNS`)."""
        key = self._keys("runs", mid)
        with self._r.pipeline() as pipe:
            pipe.lpush(key, json.dumps(run, separators=(",", ":"), sort_keys=True))
            pipe.ltrim(key, 0, MAX_RUNS - 1)
            pipe.execute()

    def recent(self, mid: str, count: int = MAX_RUNS) -> list[dict[str, Any]]:
        """The latest run records, newest first."""
        return [json.loads(raw) for raw in self._r.lrange(self._keys("runs", mid), 0, max(0, count - 1))]
