"""The quarantine: items Salesforce refused, kept per mailbox so the person can see why.

An entry holds a keyed hash of the Message-ID (or meeting key), the object and Salesforce's
reason: never a subject, a body, an address list or the Message-ID itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from backend.store.batch import Batch, Deferred
from backend.store.keys import Keys

MAX_QUARANTINE = 200
# The records an entry may be about (an item's own record, or one of its relation rows).
QUARANTINED_OBJECTS = ("EmailMessage", "Task", "Event", "EmailMessageRelation", "EventRelation")
# Fields an entry may hold (anything else a caller passes is dropped, content included).
_ALLOWED = ("key", "object", "reason", "at")


class QuarantineRepo:
    """Refused items per mailbox (``P quarantine:{mid}``, indexed by ``P quarantine-idx:{mid}``)."""

    def __init__(self, client: redis.Redis, keys: Keys, hasher: Callable[[str], str]) -> None:
        self._r = client
        self._keys = keys
        self._hash = hasher

    def ref(self, key: str) -> str:
        """How an item key is kept in an entry: its keyed hash."""
        return self._hash(key)

    def add(self, mid: str, entries: list[dict[str, Any]]) -> None:
        """Keep refused items: Message-ID (or meeting key), object and Salesforce's reason only.

        An item refused again (a rerun of the same batch) replaces its earlier entry instead of
        filling the list with copies.
        """
        if not entries:
            return
        key = self._keys("quarantine", mid)
        index = self._keys("quarantine-idx", mid)
        latest: dict[str, str] = {}
        for entry in entries:
            clean = {k: entry[k] for k in _ALLOWED if k in entry}
            if "key" in clean:
                clean["key"] = self._hash(str(clean["key"]))
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

    def release(self, mid: str, keys: list[str]) -> int:
        """Drop the entries of items since written (the rerun of a page got them in); returns how many.

        One look first (EXISTS): most mailboxes have no quarantine at all.
        """
        index = self._keys("quarantine-idx", mid)
        if not keys or not self._r.exists(index):
            return 0
        names = [f"{self._hash(k)}|{obj}" for k in sorted(set(keys)) for obj in QUARANTINED_OBJECTS]
        found = [(name, value) for name, value in zip(names, self._r.hmget(index, names), strict=True) if value]
        if not found:
            return 0
        with self._r.pipeline() as pipe:
            for name, value in found:
                pipe.lrem(self._keys("quarantine", mid), 0, str(value))
                pipe.hdel(index, name)
            pipe.execute()
        return len(found)

    def recent_in(self, batch: Batch, mid: str, count: int = 20) -> Deferred[list[dict[str, Any]]]:
        """:meth:`recent`, read with the batch."""
        batch.pipe.lrange(self._keys("quarantine", mid), 0, max(0, count - 1))
        return batch.defer(lambda rows: [json.loads(raw) for raw in rows])

    def count_in(self, batch: Batch, mid: str) -> Deferred[int]:
        """:meth:`count`, read with the batch."""
        batch.pipe.llen(self._keys("quarantine", mid))
        return batch.defer(int)

    def recent(self, mid: str, count: int = 20) -> list[dict[str, Any]]:
        """The latest quarantined items, newest first."""
        return [json.loads(raw) for raw in self._r.lrange(self._keys("quarantine", mid), 0, max(0, count - 1))]

    def count(self, mid: str) -> int:
        """How many quarantined items are kept."""
        return int(self._r.llen(self._keys("quarantine", mid)))
