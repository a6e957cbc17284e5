"""Admin console sessions: a cookie's session id -> the admin's uid and the session's CSRF token."""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from backend.store.keys import Keys
from backend.store.sessions import end_indexed


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in console: whose, and the token every state-changing call must echo."""

    sid: str
    uid: str
    csrf: str


class ConsoleSessionRepo:
    """Server-side console sessions (``P console:{sid}``), with their lifetime as TTL."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def create(self, sid: str, uid: str, csrf: str, ttl_seconds: int) -> ConsoleSession:
        """Record a new console session."""
        with self._r.pipeline() as pipe:
            pipe.set(self._keys("console", sid), json.dumps({"uid": uid, "csrf": csrf}), ex=ttl_seconds)
            pipe.sadd(self._keys("console", "by-user", uid), sid)
            pipe.expire(self._keys("console", "by-user", uid), ttl_seconds)
            pipe.execute()
        return ConsoleSession(sid, uid, csrf)

    def get(self, sid: str) -> ConsoleSession | None:
        """The live session, or None."""
        raw = self._r.get(self._keys("console", sid))
        if not raw:
            return None
        data = json.loads(raw)
        return ConsoleSession(sid, str(data["uid"]), str(data["csrf"]))

    def end(self, sid: str) -> None:
        """Log out one console."""
        self._r.delete(self._keys("console", sid))

    def end_all(self, uid: str) -> None:
        """End every console session of a user (their Salesforce login was revoked)."""
        end_indexed(self._r, self._keys("console", "by-user", uid), lambda sid: self._keys("console", sid))
