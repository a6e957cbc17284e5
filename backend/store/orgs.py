"""Org settings (``P org:{org}``): the org policy an admin controls, and the org's Salesforce API budget state."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import redis

from backend.store.batch import Batch, Deferred
from backend.store.codec import decode, encode_value
from backend.store.keys import Keys


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
    # Defaults of people's sync preferences (each may be locked, see ``locked``).
    sync_emails: bool = True
    sync_events: bool = True
    cancelled_events: str = "mark"
    # Days of mail a first run reads; -1 keeps the server's BACKFILL_DAYS.
    backfill_days: int = -1
    # What a person may do with a mailbox an administrator mass-activated (``backend.sync.mass_controls``):
    # pausing is harmless (Resume is theirs too), deactivating undoes the admin's decision.
    mass_activated_may_pause: bool = True
    mass_activated_may_deactivate: bool = False
    # Policy names people may not change: their value is the org's (``backend.sync.policy``).
    locked: list[str] = field(default_factory=list)
    # Last API usage Salesforce reported (Sforce-Limit-Info) and when.
    api_used: int = 0
    api_max: int = 0
    api_seen_at: float = 0.0
    # Background runs for the org wait until this time (API budget exceeded); 0 when not backing off.
    api_backoff_until: float = 0.0
    api_backoff_level: int = 0
    updated_at: float = 0.0


# Resets the ladder (level and until) only while no backoff is in force (ARGV[1] = now): a
# colleague's run may have entered one after this run read the org.
_END_BACKOFF = """
local till = tonumber(redis.call('HGET', KEYS[1], 'api_backoff_until') or '0') or 0
local level = tonumber(redis.call('HGET', KEYS[1], 'api_backoff_level') or '0') or 0
if till > tonumber(ARGV[1]) or level == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'api_backoff_level', '0', 'api_backoff_until', '0.0', 'updated_at', ARGV[1])
return 1
"""


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

    def get_in(self, batch: Batch, org_id: str) -> Deferred[OrgSettings]:
        """:meth:`get`, read with the batch."""
        batch.pipe.hgetall(self._keys("org", org_id))
        return batch.defer(lambda data: self._decode(org_id, data))

    @staticmethod
    def _decode(org_id: str, data: dict[str, str]) -> OrgSettings:
        if not data:
            return OrgSettings(org_id=org_id)
        settings = decode(OrgSettings, data)
        settings.org_id = org_id
        return settings

    def update(self, org_id: str, **changes: object) -> OrgSettings:
        """Change some settings and return the result."""
        self.put(org_id, **changes)
        return self.get(org_id)

    def put(self, org_id: str, **changes: object) -> None:
        """Change some settings (one round trip: a run notes the API usage after each Salesforce call)."""
        changes["updated_at"] = time.time()
        changes["org_id"] = org_id
        self._r.hset(self._keys("org", org_id), mapping={k: encode_value(v) for k, v in changes.items()})

    def end_backoff(self, org_id: str, now: float) -> bool:
        """Start the backoff ladder again, unless a backoff is in force at ``now``; True when it was reset."""
        return bool(self._r.eval(_END_BACKOFF, 1, self._keys("org", org_id), encode_value(now)))

    def backoff_until(self, org_ids: list[str]) -> dict[str, float]:
        """Each org's ``api_backoff_until`` (0 when none), in one round trip (for the clock)."""
        with self._r.pipeline(transaction=False) as pipe:
            for org in org_ids:
                pipe.hget(self._keys("org", org), "api_backoff_until")
            rows = pipe.execute()
        return {org: float(json.loads(raw)) if raw else 0.0 for org, raw in zip(org_ids, rows, strict=True)}
