"""Sync run history, the quarantine, cursor saves tied to the mailbox state, and cached org capabilities.

Also the two pieces of run coordination that live in Redis:

* **Email claims** (``claim:{org}:{digest}``): Salesforce does not keep ``EmailMessage.MessageIdentifier``
  unique, so two colleagues' runs holding the same email could both find it missing and both write
  it. A run claims each email key of a batch (``SET NX EX``, value ``{mailbox}:{run}``) before it
  looks the batch up and releases the claims after the write; a key claimed by another run waits.
* **Logged meetings** (``evmap:{mid}``): remote event id -> ``{end}|{event key}`` for meetings the
  mailbox organised and we logged, so a meeting that later disappears from the calendar (the
  organiser cancelled it) can be found in Salesforce. Ids and times only.

Run records and quarantine entries hold ids, counts, codes and Salesforce's reasons: never a
subject, a body or an address list.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import redis

from backend.store.codec import encode_value
from backend.store.keys import Keys

MAX_RUNS = 20
MAX_QUARANTINE = 200
# Transient refusals are counted per record for this long (a record refused as "not now" for
# days is counted from its first refusal within it).
RETRY_COUNT_TTL_SECONDS = 7 * 24 * 3600
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

# Claims each email key for this run (ARGV[1] = holder "{mailbox}:{run}", ARGV[2] = the mailbox's
# prefix "{mailbox}:", ARGV[3] = TTL). A claim left by an earlier run of the same mailbox is taken
# over: one mailbox never has two runs at once (unique job id), so that run is dead. Returns the
# 1-based positions of the keys another mailbox's run holds.
_CLAIM = """
local others = {}
for i, key in ipairs(KEYS) do
  if not redis.call('SET', key, ARGV[1], 'NX', 'EX', ARGV[3]) then
    local holder = redis.call('GET', key)
    if holder == ARGV[1] or string.sub(holder, 1, string.len(ARGV[2])) == ARGV[2] then
      redis.call('SET', key, ARGV[1], 'EX', ARGV[3])
    else
      table.insert(others, i)
    end
  end
end
return others
"""
# Releases only the claims this run still holds (an expired and re-taken claim is someone else's).
_RELEASE = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
"""
# A logged meeting is remembered this long after its last write (the map of a mailbox whose
# calendar stopped changing, or that was deactivated, goes away by itself).
EVENT_MAP_TTL_SECONDS = 120 * 24 * 3600
# Entries of meetings that already ended are pruned once the map holds more than this.
EVENT_MAP_PRUNE_AT = 1000


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
        """Keep refused items: Message-ID (or meeting key), object and Salesforce's reason only.

        An item refused again (a rerun of the same batch) replaces its earlier entry instead of
        filling the list with copies.
        """
        if not entries:
            return
        key = self._keys("quarantine", mid)
        index = self._keys("quarantine-idx", mid)
        allowed = ("key", "object", "reason", "at")
        latest: dict[str, str] = {}
        for entry in entries:
            clean = {k: entry[k] for k in allowed if k in entry}
            latest[f"{clean.get('key', '')}|{clean.get('object', '')}"] = json.dumps(
                clean, separators=(",", ":"), sort_keys=True)
        names = list(latest)
        earlier = self._r.hmget(index, names)
        with self._r.pipeline() as pipe:
            for old in earlier:
                if old:
                    pipe.lrem(key, 0, str(old))
            for value in latest.values():
                pipe.lpush(key, value)
            pipe.hset(index, mapping={name: value for name, value in latest.items()})
            pipe.ltrim(key, 0, MAX_QUARANTINE - 1)
            pipe.execute()
        if self._r.hlen(index) > 4 * MAX_QUARANTINE:
            # Entries trimmed off the list long ago: forget them (at worst one later copy).
            self._r.delete(index)

    def count_transient(self, mid: str, keys: list[str]) -> dict[str, int]:
        """Count one more transient refusal for each of ``keys``; returns each key's count so far."""
        if not keys:
            return {}
        name = self._keys("retries", mid)
        unique = sorted(set(keys))
        with self._r.pipeline() as pipe:
            for k in unique:
                pipe.hincrby(name, k, 1)
            pipe.expire(name, RETRY_COUNT_TTL_SECONDS)
            counts = pipe.execute()[:-1]
        return {k: int(c) for k, c in zip(unique, counts, strict=True)}

    def forget_transient(self, mid: str, keys: list[str]) -> None:
        """Drop the transient-refusal counts of ``keys`` (written or quarantined now)."""
        if keys:
            self._r.hdel(self._keys("retries", mid), *sorted(set(keys)))

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

    # Email claims: one run at a time looks up and writes a given Message-ID across the org.
    def _claim_key(self, org_id: str, email_key: str) -> str:
        digest = hashlib.sha256(email_key.encode("utf-8")).hexdigest()[:40]
        return self._keys("claim", org_id, digest)

    def claim_emails(self, org_id: str, email_keys: list[str], holder: str, ttl_seconds: int) -> set[str]:
        """Claim ``email_keys`` for ``holder`` ("{mailbox}:{run}"); returns the keys another mailbox's run holds."""
        if not email_keys:
            return set()
        prefix = holder.split(":", 1)[0] + ":"
        keys = [self._claim_key(org_id, k) for k in email_keys]
        positions = self._r.eval(_CLAIM, len(keys), *keys, holder, prefix, str(int(ttl_seconds)))
        return {email_keys[int(p) - 1] for p in positions}

    def release_emails(self, org_id: str, email_keys: list[str], holder: str) -> int:
        """Release the claims ``holder`` still holds; returns how many."""
        if not email_keys:
            return 0
        keys = [self._claim_key(org_id, k) for k in email_keys]
        return int(self._r.eval(_RELEASE, len(keys), *keys, holder))

    def claimed_by_others(self, org_id: str, email_keys: list[str], holder: str) -> set[str]:
        """The keys among ``email_keys`` a run of another mailbox holds now (one round trip)."""
        if not email_keys:
            return set()
        prefix = holder.split(":", 1)[0] + ":"
        values = self._r.mget([self._claim_key(org_id, k) for k in email_keys])
        return {k for k, v in zip(email_keys, values, strict=True) if v is not None and not str(v).startswith(prefix)}

    # Meetings the mailbox organised and we logged: remote id -> "{end}|{event key}".
    def remember_events(self, mid: str, events: dict[str, tuple[str, float]]) -> None:
        """Remember logged meetings (remote id -> (event key, end time)); prunes ended ones when the map grows."""
        if not events:
            return
        key = self._keys("evmap", mid)
        with self._r.pipeline() as pipe:
            pipe.hset(key, mapping={rid: f"{int(end)}|{event_key}" for rid, (event_key, end) in events.items()})
            pipe.expire(key, EVENT_MAP_TTL_SECONDS)
            pipe.hlen(key)
            size = pipe.execute()[-1]
        if int(size) > EVENT_MAP_PRUNE_AT:
            now = time.time()
            entries = self._r.hgetall(key)
            ended = [str(rid) for rid, value in entries.items() if float(str(value).split("|", 1)[0]) < now]
            if ended:
                self._r.hdel(key, *ended)

    def logged_events(self, mid: str, remote_ids: list[str]) -> dict[str, tuple[str, float]]:
        """The logged meetings among ``remote_ids``: remote id -> (event key, end time)."""
        if not remote_ids:
            return {}
        values = self._r.hmget(self._keys("evmap", mid), remote_ids)
        found: dict[str, tuple[str, float]] = {}
        for rid, value in zip(remote_ids, values, strict=True):
            if value:
                end, _, event_key = str(value).partition("|")
                found[rid] = (event_key, float(end))
        return found

    def forget_events(self, mid: str, remote_ids: list[str]) -> None:
        """Forget meetings (cancelled, deleted, or handled)."""
        if remote_ids:
            self._r.hdel(self._keys("evmap", mid), *remote_ids)

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
