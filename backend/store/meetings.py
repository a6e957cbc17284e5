"""The meeting map (``P evmap:{mid}``): remote event id -> ``{end}|{event key}`` of meetings the mailbox organised.

Kept for meetings we logged, so a meeting that later disappears from the calendar (the organiser
cancelled it) can be found in Salesforce: the deletion carries only the remote id. Ids and times
only, and the meeting's key (its UID) encrypted: the map must give it back, so it cannot be a hash.
"""

from __future__ import annotations

import time

import redis

from backend.security.crypto import DecryptError, SecretBox
from backend.store.keys import Keys

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

    def _open(self, sealed: str) -> str:
        try:
            return self._box.decrypt(sealed)
        except DecryptError:
            return sealed  # written before keys were sealed

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
            ended = [str(rid) for rid, value in entries.items() if float(str(value).split("|", 1)[0]) < now]
            if ended:
                self._r.hdel(key, *ended)

    def logged(self, mid: str, remote_ids: list[str]) -> dict[str, tuple[str, float]]:
        """The logged meetings among ``remote_ids``: remote id -> (event key, end time)."""
        if not remote_ids:
            return {}
        values = self._r.hmget(self._keys("evmap", mid), remote_ids)
        found: dict[str, tuple[str, float]] = {}
        for rid, value in zip(remote_ids, values, strict=True):
            if value:
                end, _, event_key = str(value).partition("|")
                found[rid] = (self._open(event_key), float(end))
        return found

    def forget(self, mid: str, remote_ids: list[str]) -> None:
        """Forget meetings (cancelled, deleted, or handled)."""
        if remote_ids:
            self._r.hdel(self._keys("evmap", mid), *remote_ids)
