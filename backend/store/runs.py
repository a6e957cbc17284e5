"""Sync run history, the quarantine, cursor saves tied to the mailbox state, and cached org capabilities.

Run records and quarantine entries hold ids, counts, codes and Salesforce's reasons: never a
subject, a body or an address list.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from backend.store.codec import encode_value
from backend.store.keys import Keys

MAX_RUNS = 20
MAX_QUARANTINE = 200
CAPABILITIES_TTL_SECONDS = 24 * 3600

# Saves cursors only while the mailbox still has a connection (running, paused, disabled): a run
# that finishes after the person pressed Deactivate (which deletes the cursors) must not write them
# back. ARGV[1] is the number of allowed states, then the states, then folder/cursor pairs.
_SAVE_IF_CONNECTED = """
local state = redis.call('HGET', KEYS[1], 'state')
local n = tonumber(ARGV[1])
local allowed = false
for i = 2, n + 1 do
  if state == ARGV[i] then allowed = true end
end
if not allowed then
  return 0
end
for i = n + 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 1
"""
_CONNECTED_STATES = ("running", "paused", "disabled_error")


class SyncRunRepo:
    """Recent runs and quarantined items per mailbox; capability cache per org."""

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

    def quarantine(self, mid: str, entries: list[dict[str, Any]]) -> None:
        """Keep refused items: Message-ID (or meeting key), object and Salesforce's reason only."""
        if not entries:
            return
        key = self._keys("quarantine", mid)
        allowed = ("key", "object", "reason", "at")
        with self._r.pipeline() as pipe:
            for entry in entries:
                clean = {k: entry[k] for k in allowed if k in entry}
                pipe.lpush(key, json.dumps(clean, separators=(",", ":"), sort_keys=True))
            pipe.ltrim(key, 0, MAX_QUARANTINE - 1)
            pipe.execute()

    def quarantined(self, mid: str, count: int = 20) -> list[dict[str, Any]]:
        """The latest quarantined items, newest first."""
        return [json.loads(raw) for raw in self._r.lrange(self._keys("quarantine", mid), 0, max(0, count - 1))]

    def quarantine_count(self, mid: str) -> int:
        """How many quarantined items are kept."""
        return int(self._r.llen(self._keys("quarantine", mid)))

    def save_cursors_if_connected(self, mid: str, cursors: dict[str, str]) -> bool:
        """Save folder cursors atomically unless the mailbox was deactivated meanwhile; True when saved."""
        if not cursors:
            return True
        args: list[str] = [str(len(_CONNECTED_STATES)), *(encode_value(s) for s in _CONNECTED_STATES)]
        for folder, cursor in cursors.items():
            args.extend((folder, cursor))
        saved = self._r.eval(_SAVE_IF_CONNECTED, 2, self._keys("mailbox", mid), self._keys("cursors", mid), *args)
        return bool(saved)

    def due_details(self, mids: list[str]) -> list[tuple[str, str]]:
        """(state, org id) of each mailbox, in one round trip (for the clock; values as stored, decoded)."""
        with self._r.pipeline(transaction=False) as pipe:
            for mid in mids:
                pipe.hmget(self._keys("mailbox", mid), "state", "org_id")
            rows = pipe.execute()
        result: list[tuple[str, str]] = []
        for state, org in rows:
            result.append((json.loads(state) if state else "", json.loads(org) if org else ""))
        return result

    def backoff_until(self, org_ids: list[str]) -> dict[str, float]:
        """Each org's ``api_backoff_until`` (0 when none), in one round trip."""
        with self._r.pipeline(transaction=False) as pipe:
            for org in org_ids:
                pipe.hget(self._keys("org", org), "api_backoff_until")
            rows = pipe.execute()
        return {org: float(json.loads(raw)) if raw else 0.0 for org, raw in zip(org_ids, rows, strict=True)}

    # Org capabilities (Enhanced Email on/off, our key field present), found by describe.
    def capabilities(self, org_id: str) -> dict[str, object] | None:
        """Cached capabilities of an org, or None."""
        raw = self._r.get(self._keys("sfcaps", org_id))
        return json.loads(raw) if raw else None

    def put_capabilities(self, org_id: str, value: dict[str, object]) -> None:
        """Cache an org's capabilities for a day (an admin may switch Enhanced Email)."""
        self._r.set(self._keys("sfcaps", org_id), json.dumps(value), ex=CAPABILITIES_TTL_SECONDS)


class CapabilityCacheAdapter:
    """The connector's capability cache, backed by :class:`SyncRunRepo`."""

    def __init__(self, runs: SyncRunRepo) -> None:
        self._runs = runs

    def get(self, org_id: str) -> dict[str, object] | None:
        """Cached capabilities, or None."""
        return self._runs.capabilities(org_id)

    def put(self, org_id: str, value: dict[str, object]) -> None:
        """Cache capabilities."""
        self._runs.put_capabilities(org_id, value)
