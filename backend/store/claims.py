"""Email claims across an org (``P claim:{org}:{sha256}``): one run at a time looks up and writes a Message-ID.

Salesforce does not keep ``EmailMessage.MessageIdentifier`` unique, so two colleagues' runs holding
the same email could both find it missing and both write it. A run claims each email key of a
batch (``SET NX EX``, value ``{mailbox}:{run}``) before it looks the batch up and releases the
claims after the write; a key claimed by another run waits (``backend.sync.claims``).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import redis

from backend.store.keys import Keys

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

# Keeps the claims this run still holds for ARGV[3] seconds under ARGV[2] ("doubt:" + holder), a
# value no run's prefix matches: nobody, this mailbox's next run included, takes them over.
_DOUBT = """
local kept = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('SET', key, ARGV[2], 'EX', ARGV[3])
    kept = kept + 1
  end
end
return kept
"""
DOUBT_PREFIX = "doubt:"


# Cached: a run claims, asks about and releases each email key up to four times.
@lru_cache(maxsize=16_384)
def key_digest(email_key: str) -> str:
    """The claim key's digest of an email key (Message-IDs are long and may hold any character)."""
    return hashlib.sha256(email_key.encode("utf-8")).hexdigest()[:40]


class EmailClaimRepo:
    """Claims on email keys, held by ``{mailbox}:{run}`` with a TTL (a dead run's claims expire)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def _key(self, org_id: str, email_key: str) -> str:
        return self._keys("claim", org_id, key_digest(email_key))

    def claim(self, org_id: str, email_keys: list[str], holder: str, ttl_seconds: int) -> set[str]:
        """Claim ``email_keys`` for ``holder`` ("{mailbox}:{run}"); returns the keys another mailbox's run holds."""
        if not email_keys:
            return set()
        prefix = holder.split(":", 1)[0] + ":"
        keys = [self._key(org_id, k) for k in email_keys]
        positions = self._r.eval(_CLAIM, len(keys), *keys, holder, prefix, str(int(ttl_seconds)))
        return {email_keys[int(p) - 1] for p in positions}

    def release(self, org_id: str, email_keys: list[str], holder: str) -> int:
        """Release the claims ``holder`` still holds; returns how many."""
        if not email_keys:
            return 0
        keys = [self._key(org_id, k) for k in email_keys]
        return int(self._r.eval(_RELEASE, len(keys), *keys, holder))

    def hold_in_doubt(self, org_id: str, email_keys: list[str], holder: str, seconds: int) -> int:
        """Keep ``holder``'s claims for ``seconds`` more, held by no run (a write's outcome unknown); how many."""
        if not email_keys:
            return 0
        keys = [self._key(org_id, k) for k in email_keys]
        return int(self._r.eval(_DOUBT, len(keys), *keys, holder, DOUBT_PREFIX + holder, str(int(seconds))))

    def held_by_others(self, org_id: str, email_keys: list[str], holder: str) -> set[str]:
        """The keys among ``email_keys`` a run of another mailbox holds now (one round trip)."""
        if not email_keys:
            return set()
        prefix = holder.split(":", 1)[0] + ":"
        values = self._r.mget([self._key(org_id, k) for k in email_keys])
        return {k for k, v in zip(email_keys, values, strict=True) if v is not None and not str(v).startswith(prefix)}
