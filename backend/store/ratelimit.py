"""Rate limits (``P ratelimit:{name}:{who}``): fixed-window counters with a TTL."""

from __future__ import annotations

import redis

from backend.store.keys import Keys


class RateLimiter:
    """Fixed-window counters, for example connection attempts per user per quarter hour."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def hit(self, name: str, who: str, limit: int, window_seconds: int) -> tuple[bool, int]:
        """Count one attempt; returns (allowed, seconds until the window resets)."""
        key = self._keys("ratelimit", name, who)
        with self._r.pipeline() as pipe:
            # SET NX EX starts the window once; INCR keeps the TTL (no EXPIRE NX: Redis 6.2 lacks it).
            pipe.set(key, 0, nx=True, ex=window_seconds)
            pipe.incr(key)
            pipe.ttl(key)
            _, count, ttl = pipe.execute()
        return int(count) <= limit, max(int(ttl), 1)

    def reset(self, name: str, who: str) -> None:
        """Forget the attempts of ``who`` (after a success)."""
        self._r.delete(self._keys("ratelimit", name, who))

    def refund(self, name: str, who: str) -> None:
        """Take back one counted attempt (it never reached the service); never below zero, TTL kept."""
        key = self._keys("ratelimit", name, who)
        # One script, so a window that ends meanwhile is not recreated without a TTL by DECR.
        self._r.eval(_REFUND, 1, key)


_REFUND = """
if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('GET', KEYS[1])) > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
"""
