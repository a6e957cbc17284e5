"""The Salesforce org capability cache: Enhanced Email on or off, our key field present (found by describe)."""

from __future__ import annotations

import json

import redis

from backend.store.keys import Keys

# A day: an admin may switch Enhanced Email, and describe is too dear to repeat every run.
CAPABILITIES_TTL_SECONDS = 24 * 3600


class CapabilityRepo:
    """Per org, the capabilities as JSON (``P sfcaps:{org}``); the Salesforce connector's capability cache."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def get(self, org_id: str) -> dict[str, object] | None:
        """Cached capabilities of an org, or None."""
        raw = self._r.get(self._keys("sfcaps", org_id))
        return json.loads(raw) if raw else None

    def put(self, org_id: str, value: dict[str, object]) -> None:
        """Cache an org's capabilities for a day (an admin may switch Enhanced Email)."""
        self._r.set(self._keys("sfcaps", org_id), json.dumps(value), ex=CAPABILITIES_TTL_SECONDS)
