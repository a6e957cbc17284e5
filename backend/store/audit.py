"""The org's audit log: every administrator action (who, what, on whom, when), newest first."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from backend.store.keys import Keys

MAX_AUDIT = 1000


class AuditLog:
    """Administrator actions per org (``P audit:{org}``), newest first, at most :data:`MAX_AUDIT`."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def record(self, org_id: str, actor: str, action: str, targets: list[str], detail: dict[str, Any] | None = None,
               at: float | None = None) -> dict[str, Any]:
        """Keep one entry: ``actor`` (a uid) did ``action`` on ``targets`` (uids, or the org itself)."""
        entry = {"at": at or time.time(), "actor": actor, "action": action, "targets": targets,
                 "detail": detail or {}}
        key = self._keys("audit", org_id)
        with self._r.pipeline() as pipe:
            pipe.lpush(key, json.dumps(entry, separators=(",", ":"), sort_keys=True))
            pipe.ltrim(key, 0, MAX_AUDIT - 1)
            pipe.execute()
        return entry

    def recent(self, org_id: str, count: int = 200) -> list[dict[str, Any]]:
        """The latest entries, newest first."""
        return [json.loads(raw) for raw in self._r.lrange(self._keys("audit", org_id), 0, max(0, count - 1))]
