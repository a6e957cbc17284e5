"""The meeting map (``P evmap:{mid}``): remote event id -> ``{end}|{event key}`` of meetings the mailbox organised
(and ``series:{master id}`` -> the logged occurrences of a series), and the relations this product added.

Kept for meetings we logged, so a meeting that later disappears from the calendar (the organiser
cancelled it) can be found in Salesforce: the deletion carries only the remote id. Ids and times
only, and the meeting's key (its UID) encrypted: the map must give it back, so it cannot be a hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable

import redis

from backend.security.crypto import DecryptError, SecretBox
from backend.store.keys import Keys

log = logging.getLogger(__name__)

# ARGV: field, old value, new value, ...; each field set only while it still holds its old value.
_ROTATE_FIELDS = """
local n = 0
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    n = n + 1
  end
end
return n
"""

# Every Fernet token starts so (its version byte 0x80, base64url): what an event key never does.
_FERNET_PREFIX = "gAAAAA"
# A logged meeting is remembered this long after its last write (the map of a mailbox whose
# calendar stopped changing, or that was deactivated, goes away by itself).
EVENT_MAP_TTL_SECONDS = 120 * 24 * 3600
# Entries of meetings that already ended are pruned once the map holds more than this.
EVENT_MAP_PRUNE_AT = 1000


class MeetingMapRepo:
    """Per mailbox, the organised meetings Salesforce holds: remote id -> (event key, end time)."""

    def __init__(self, client: redis.Redis, keys: Keys, box: SecretBox) -> None:
        self._r = client
        self._keys = keys
        self._box = box

    def _open(self, sealed: str) -> str | None:
        if not sealed.startswith(_FERNET_PREFIX):
            return sealed  # written before keys were sealed (kept up to EVENT_MAP_TTL_SECONDS): in clear
        try:
            return self._box.decrypt(sealed)
        except DecryptError:
            # Never the sealed text itself as the key: no meeting has it, so its cancellation would be
            # lost without a word (a key dropped before `flask keys rotate` reached the map).
            return None

    def remember(self, mid: str, events: dict[str, tuple[str, float]]) -> None:
        """Remember logged meetings (remote id -> (event key, end time)); prunes ended ones when the map grows."""
        if not events:
            return
        key = self._keys("evmap", mid)
        with self._r.pipeline() as pipe:
            pipe.hset(key, mapping={rid: f"{int(end)}|{self._box.encrypt(event_key)}"
                                    for rid, (event_key, end) in events.items()})
            pipe.expire(key, EVENT_MAP_TTL_SECONDS)
            pipe.hlen(key)
            size = pipe.execute()[-1]
        if int(size) > EVENT_MAP_PRUNE_AT:
            now = time.time()
            entries = self._r.hgetall(key)
            ended = [str(rid) for rid, value in entries.items()
                     if not str(rid).startswith("series:") and float(str(value).split("|", 1)[0]) < now]
            if ended:
                self._r.hdel(key, *ended)

    def logged(self, mid: str, remote_ids: list[str]) -> dict[str, tuple[str, float]]:
        """The logged meetings among ``remote_ids``: remote id -> (event key, end time)."""
        if not remote_ids:
            return {}
        values = self._r.hmget(self._keys("evmap", mid), remote_ids)
        found: dict[str, tuple[str, float]] = {}
        unreadable = 0
        for rid, value in zip(remote_ids, values, strict=True):
            if value:
                end, _, sealed = str(value).partition("|")
                event_key = self._open(sealed)
                if event_key is None:
                    unreadable += 1
                    continue
                found[rid] = (event_key, float(end))
        if unreadable:
            log.error("meeting map mid=%s: %d meeting key(s) cannot be decrypted with the configured keys; "
                      "their cancellations are skipped", mid, unreadable)
        return found

    def rotate_all(self) -> tuple[int, int]:
        """Re-encrypt every meeting key of every map under the current key; returns (rotated, unreadable)."""
        rotated = unreadable = 0
        for key in self._r.scan_iter(match=self._keys.pattern("evmap", "*"), count=500):
            changes: list[str] = []
            for rid, value in self._r.hgetall(key).items():
                if str(rid).startswith("series:"):
                    continue  # the series' entries hold no sealed value
                end, _, sealed = str(value).partition("|")
                try:
                    # An entry from before keys were sealed is sealed now, under the current key.
                    fresh = self._box.rotate(sealed) if sealed.startswith(_FERNET_PREFIX) else \
                        self._box.encrypt(sealed)
                    changes += [str(rid), str(value), f"{end}|{fresh}"]
                except DecryptError:
                    unreadable += 1
            if changes:
                # Compare-and-set per field in one script: an entry rewritten by a run meanwhile stays.
                rotated += int(self._r.eval(_ROTATE_FIELDS, 1, key, *changes))
        return rotated, unreadable

    # -- series: the master's id -> its occurrences logged (a deletion names only the master) -----
    def remember_series(self, mid: str, series: dict[str, list[tuple[str, float]]]) -> None:
        """Remember logged occurrences of organised series (master id -> [(event key, end time)])."""
        if not series:
            return
        key = self._keys("evmap", mid)
        fields = [f"series:{sid}" for sid in series]
        known = self._r.hmget(key, fields)
        merged: dict[str, str] = {}
        for entries, field_name, old in zip(series.values(), fields, known, strict=True):
            entries_by_key = {k: e for k, e in (json.loads(old) if old else [])}
            entries_by_key.update({k: e for k, e in entries})
            merged[field_name] = json.dumps(sorted(entries_by_key.items()))
        with self._r.pipeline() as pipe:
            pipe.hset(key, mapping={name: value for name, value in merged.items()})
            pipe.expire(key, EVENT_MAP_TTL_SECONDS)
            pipe.execute()

    def logged_series(self, mid: str, remote_ids: list[str]) -> dict[str, list[tuple[str, float]]]:
        """The logged occurrences of the series among ``remote_ids`` (master ids)."""
        if not remote_ids:
            return {}
        values = self._r.hmget(self._keys("evmap", mid), [f"series:{rid}" for rid in remote_ids])
        return {rid: [(str(k), float(e)) for k, e in json.loads(v)]
                for rid, v in zip(remote_ids, values, strict=True) if v}

    def forget_series(self, mid: str, remote_ids: list[str]) -> None:
        """Forget series (deleted, or handled)."""
        if remote_ids:
            self._r.hdel(self._keys("evmap", mid), *[f"series:{rid}" for rid in remote_ids])

    # -- the relations this product added (an attendee removed loses only these) -----------------
    def _rel_key(self, org: str, event_key: str) -> str:
        return self._keys("evrel", org, hashlib.sha256(event_key.encode("utf-8")).hexdigest())

    def added_relations(self, org: str, event_keys: Iterable[str]) -> dict[str, frozenset[str]]:
        """The person ids this product related to each meeting (org-wide: any colleague's run)."""
        keys = sorted(set(event_keys))
        if not keys:
            return {}
        with self._r.pipeline() as pipe:
            for event_key in keys:
                pipe.smembers(self._rel_key(org, event_key))
            answers = pipe.execute()
        return {k: frozenset(str(v) for v in members) for k, members in zip(keys, answers, strict=True) if members}

    def note_relations(self, org: str, added: dict[str, list[str]], removed: dict[str, list[str]]) -> None:
        """Record relations this product added to meetings, and those it removed."""
        with self._r.pipeline() as pipe:
            for event_key, ids in added.items():
                if ids:
                    pipe.sadd(self._rel_key(org, event_key), *ids)
                    pipe.expire(self._rel_key(org, event_key), EVENT_MAP_TTL_SECONDS)
            for event_key, ids in removed.items():
                if ids:
                    pipe.srem(self._rel_key(org, event_key), *ids)
            pipe.execute()

    def forget(self, mid: str, remote_ids: list[str]) -> None:
        """Forget meetings (cancelled, deleted, or handled)."""
        if remote_ids:
            self._r.hdel(self._keys("evmap", mid), *remote_ids)
