"""API sessions behind bearer tokens: a token names a session id, the session can be revoked."""

from __future__ import annotations

from collections.abc import Callable

import redis

from backend.store.batch import Batch, Deferred
from backend.store.keys import Keys


def end_indexed(client: redis.Redis, index: str, key_of: Callable[[str], str]) -> int:
    """Delete every session an index set names, and the set itself; how many it named."""
    sids = [str(s) for s in client.smembers(index)]
    with client.pipeline() as pipe:
        for sid in sids:
            pipe.delete(key_of(sid))
        pipe.delete(index)
        pipe.execute()
    return len(sids)


class ApiSessionStore:
    """Server-side records of issued bearer tokens, so logout and revocation take effect."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def create(self, sid: str, uid: str, ttl_seconds: int, idle_seconds: int | None = None) -> None:
        """Record a new session for ``uid``, ending after ``idle_seconds`` without use (at most ``ttl_seconds``)."""
        with self._r.pipeline() as pipe:
            pipe.set(self._keys("apisession", sid), uid, ex=min(ttl_seconds, idle_seconds or ttl_seconds))
            pipe.sadd(self._keys("user", "sessions", uid), sid)
            # The newest session lives longest, so its lifetime is the set's (plain EXPIRE: the
            # embedded development Redis is 6.2, which lacks EXPIRE's GT option).
            pipe.expire(self._keys("user", "sessions", uid), ttl_seconds)
            pipe.execute()

    def owner(self, sid: str) -> str | None:
        """The uid of a live session, or None when revoked or expired."""
        value = self._r.get(self._keys("apisession", sid))
        return str(value) if value is not None else None

    def owner_in(self, batch: Batch, sid: str) -> Deferred[str | None]:
        """:meth:`owner`, read with the batch."""
        batch.pipe.get(self._keys("apisession", sid))
        return batch.defer(lambda value: str(value) if value is not None else None)

    def touch_in(self, batch: Batch, sid: str, idle_seconds: int) -> None:
        """:meth:`touch`, sent with the batch (a revoked or expired session stays gone: EXPIRE needs the key)."""
        batch.pipe.expire(self._keys("apisession", sid), idle_seconds)
        batch.defer(bool)

    def touch(self, sid: str, idle_seconds: int) -> None:
        """Extend a live session by ``idle_seconds`` (the token's signature bounds its whole life)."""
        self._r.expire(self._keys("apisession", sid), idle_seconds)

    def revoke(self, sid: str) -> None:
        """End one session (logout)."""
        uid = self._r.getdel(self._keys("apisession", sid))
        if uid is not None:
            self._r.srem(self._keys("user", "sessions", str(uid)), sid)

    def revoke_all(self, uid: str) -> int:
        """End every session of a user (for example when their Salesforce access was revoked)."""
        return end_indexed(self._r, self._keys("user", "sessions", uid), lambda sid: self._keys("apisession", sid))
