"""Transient-refusal counts: how often Salesforce refused a record as "not now" (a locked row, a server error).

The run believes "not now" a few times, then quarantines the record; these counts are how it knows.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from backend.store.keys import Keys

# Transient refusals are counted per record for this long (a record refused as "not now" for
# days is counted from its first refusal within it).
RETRY_COUNT_TTL_SECONDS = 7 * 24 * 3600


class RetryCountRepo:
    """Per mailbox, keyed hash of an item key -> transient refusals so far (``P retries:{mid}``)."""

    def __init__(self, client: redis.Redis, keys: Keys, hasher: Callable[[str], str]) -> None:
        self._r = client
        self._keys = keys
        # Message-IDs are never kept in clear: the field is a keyed hash of the item's key.
        self._hash = hasher

    def count(self, mid: str, keys: list[str]) -> dict[str, int]:
        """Count one more transient refusal for each of ``keys``; returns each key's count so far."""
        if not keys:
            return {}
        name = self._keys("retries", mid)
        unique = sorted(set(keys))
        with self._r.pipeline() as pipe:
            for k in unique:
                pipe.hincrby(name, self._hash(k), 1)
            pipe.expire(name, RETRY_COUNT_TTL_SECONDS)
            counts = pipe.execute()[:-1]
        return {k: int(c) for k, c in zip(unique, counts, strict=True)}

    def forget_counted(self, mid: str, keys: list[str]) -> None:
        """As :meth:`forget`, asking Redis first whether the mailbox counts any (most never have one)."""
        if keys and self._r.exists(self._keys("retries", mid)):
            self.forget(mid, keys)

    def forget(self, mid: str, keys: list[str]) -> None:
        """Drop the transient-refusal counts of ``keys`` (written or quarantined now)."""
        if keys:
            self._r.hdel(self._keys("retries", mid), *sorted({self._hash(k) for k in keys}))
