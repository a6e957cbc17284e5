"""Single-use values (``P once:{purpose}:{nonce}``): one-time codes, used OAuth states and dialog tickets."""

from __future__ import annotations

import redis

from backend.store.batch import Batch, Deferred
from backend.store.keys import Keys


class OnceStore:
    """Single-use values: one-time codes, used OAuth states and dialog tickets."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def put(self, purpose: str, nonce: str, value: str, ttl_seconds: int) -> None:
        """Store a value that can be taken once within ``ttl_seconds``."""
        self._r.set(self._keys("once", purpose, nonce), value, ex=ttl_seconds)

    def peek(self, purpose: str, nonce: str) -> str | None:
        """The value, left in place (None when never stored, expired, or already taken)."""
        value = self._r.get(self._keys("once", purpose, nonce))
        return str(value) if value is not None else None

    def take(self, purpose: str, nonce: str) -> str | None:
        """Return and delete the value (None when never stored, expired, or already taken)."""
        value = self._r.getdel(self._keys("once", purpose, nonce))
        return str(value) if value is not None else None

    def seen_in(self, batch: Batch, purpose: str, nonce: str) -> Deferred[bool]:
        """Whether a nonce was seen (by :meth:`first_use`) and is still kept, read with the batch."""
        batch.pipe.exists(self._keys("once", purpose, nonce))
        return batch.defer(bool)

    def first_use(self, purpose: str, nonce: str, ttl_seconds: int) -> bool:
        """True the first time a nonce is seen within ``ttl_seconds``; False on every replay."""
        return bool(self._r.set(self._keys("once", purpose, nonce), "1", nx=True, ex=ttl_seconds))
