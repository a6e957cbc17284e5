"""Small repositories: single-use values, org settings, rate limits, the run schedule, Exchange identities."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

import redis

from backend.store.codec import decode, encode_value
from backend.store.keys import Keys


class OnceStore:
    """Single-use values: one-time codes, used OAuth states and dialog tickets."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def put(self, purpose: str, nonce: str, value: str, ttl_seconds: int) -> None:
        """Store a value that can be taken once within ``ttl_seconds``."""
        self._r.set(self._keys("once", purpose, nonce), value, ex=ttl_seconds)

    def take(self, purpose: str, nonce: str) -> str | None:
        """Return and delete the value (None when never stored, expired, or already taken)."""
        value = self._r.getdel(self._keys("once", purpose, nonce))
        return str(value) if value is not None else None

    def first_use(self, purpose: str, nonce: str, ttl_seconds: int) -> bool:
        """True the first time a nonce is seen within ``ttl_seconds``; False on every replay."""
        return bool(self._r.set(self._keys("once", purpose, nonce), "1", nx=True, ex=ttl_seconds))


@dataclass
class OrgSettings:
    """Settings an org admin controls, and the org's Salesforce API budget state."""

    org_id: str
    admin_email: str = ""
    # Addresses or domains never logged, for everyone in the org.
    blocklist: list[str] = field(default_factory=list)
    # Domains of the org itself: mail only between these is internal and not logged.
    internal_domains: list[str] = field(default_factory=list)
    block_free_mail: bool = True
    # Last API usage Salesforce reported (Sforce-Limit-Info) and when.
    api_used: int = 0
    api_max: int = 0
    api_seen_at: float = 0.0
    # Background runs for the org wait until this time (API budget exceeded); 0 when not backing off.
    api_backoff_until: float = 0.0
    api_backoff_level: int = 0
    updated_at: float = 0.0


class OrgRepo:
    """Reads and writes org settings."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def get(self, org_id: str) -> OrgSettings:
        """The org's settings (defaults when none were saved)."""
        data = self._r.hgetall(self._keys("org", org_id))
        if not data:
            return OrgSettings(org_id=org_id)
        settings = decode(OrgSettings, data)  # type: ignore[arg-type]
        settings.org_id = org_id
        return settings

    def update(self, org_id: str, **changes: object) -> OrgSettings:
        """Change some settings and return the result."""
        changes["updated_at"] = time.time()
        changes["org_id"] = org_id
        self._r.hset(self._keys("org", org_id), mapping={k: encode_value(v) for k, v in changes.items()})
        return self.get(org_id)


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


class ScheduleRepo:
    """The run schedule: a sorted set of mailbox ids scored by their next run time (epoch seconds).

    A clock tick reads only what is due (``ZRANGEBYSCORE ... LIMIT``), so its cost follows the
    number of due mailboxes, not the number of mailboxes.
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    @property
    def key(self) -> str:
        """The sorted set's key."""
        return self._keys("schedule")

    def set_next(self, mid: str, when: float) -> None:
        """Schedule the next run of ``mid`` at ``when``."""
        self._r.zadd(self.key, {mid: when})

    def next_of(self, mid: str) -> float | None:
        """When ``mid`` runs next, or None when unscheduled."""
        score = self._r.zscore(self.key, mid)
        return float(score) if score is not None else None

    def remove(self, mid: str) -> None:
        """Unschedule ``mid``."""
        self._r.zrem(self.key, mid)

    def claim_due(self, now: float, lease_seconds: float, limit: int) -> list[str]:
        """Take up to ``limit`` due ids, pushing each one's score to ``now + lease`` atomically.

        The lease keeps a mailbox from being claimed by the next tick while its job waits in the
        queue; the run itself sets the real next time when it ends.
        """
        claimed = self._r.eval(
            _CLAIM_DUE,
            1,
            self.key,
            str(now),
            str(now + lease_seconds),
            str(limit),
        )
        return [str(m) for m in claimed]

    def count(self) -> int:
        """How many mailboxes are scheduled."""
        return int(self._r.zcard(self.key))


_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)
end
return due
"""


class ExchangeIdentityRepo:
    """Which mailbox addresses an on-premises Exchange user id (an identity token's ``msexchuid``) has.

    The identity token names no address; the tie is recorded when that user connects the mailbox with
    its password (which proves it), and an identity token is then proof of those addresses.
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def _key(self, identity: str) -> str:
        return self._keys("exid", hashlib.sha256(identity.encode("utf-8")).hexdigest()[:40])

    def addresses(self, identity: str) -> frozenset[str]:
        """The addresses tied to ``identity`` (empty when none yet)."""
        raw = self._r.get(self._key(identity))
        return frozenset(json.loads(raw)) if raw else frozenset()

    def bind(self, identity: str, addresses: list[str]) -> None:
        """Tie ``identity`` to ``addresses`` (the last proven connection wins)."""
        self._r.set(self._key(identity), json.dumps(sorted({a.lower() for a in addresses})))
