"""The item trail (``P trail:{mid}:{hmac}``): what sync decided about one email or meeting of a mailbox.

The key holds a keyed hash (HMAC-SHA256 with a server key) of the Message-ID or meeting UID, never
the identifier itself, and the value only a decision code, Salesforce record ids and times, so a
copy of Redis tells nobody which mail a person has. Entries expire after :data:`TRAIL_DAYS`;
Salesforce stays the authority for "logged" (the status view asks it when the trail is silent).
The mailbox id in the key means a person's look-up never reads another person's trail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis

from backend.store.keys import Keys

TRAIL_DAYS = 30
TRAIL_TTL_SECONDS = TRAIL_DAYS * 24 * 3600
# A Salesforce record id: 15 or 18 letters and digits (anything else is not kept).
_SF_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
# Decision and reason codes are short words; a reason Salesforce gave is kept as its error code only.
_CODE = re.compile(r"^[a-z0-9_]{1,40}$")
_SF_CODE = re.compile(r"^[A-Z0-9_]{1,60}$")
# Compact, keys sorted: what json.dumps(data, separators=(",", ":"), sort_keys=True) writes for
# these codes, ids and times, encoded by msgspec in an eighth of the time (10,000 a backfill).
_COMPACT = msgspec.json.Encoder(order="sorted")
# SET key value EX ttl for every key (ARGV[1] = ttl, ARGV[i + 1] = the value of KEYS[i]): a batch's
# decisions in one command, one reply to parse instead of one per item (redis-py parses replies in
# pure Python: 10,000 of them were a tenth of a backfill's own CPU).
_RECORD = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
end
return #KEYS
"""
# Keys per script call: a long script call blocks Redis for others; 1,000 SETs take about a millisecond.
RECORD_CHUNK = 1000


@dataclass
class ItemDecision:
    """One decision about an item: a code, Salesforce ids and a time (no content)."""

    decision: str  # logged | already_logged | filtered | refused
    at: float
    reason: str = ""  # a filter Reason for "filtered"; Salesforce's error code for "refused"
    object: str = ""  # EmailMessage | Task | Event
    record_id: str = ""
    people: list[str] = field(default_factory=list)  # Contact / Lead ids the record is related to
    trigger: str = ""  # background | interactive | log_now

    def as_json(self) -> str:
        """The stored form: only codes, ids and times survive."""
        data: dict[str, Any] = {"d": self.decision, "at": round(self.at, 3)}
        if self.reason and (_CODE.match(self.reason) or _SF_CODE.match(self.reason)):
            data["r"] = self.reason
        if self.object in ("EmailMessage", "Task", "Event"):
            data["o"] = self.object
        if _SF_ID.match(self.record_id or ""):
            data["id"] = self.record_id
        people = [p for p in self.people if _SF_ID.match(p)][:20]
        if people:
            data["p"] = people
        if self.trigger in ("background", "interactive", "log_now"):
            data["t"] = self.trigger
        return _COMPACT.encode(data).decode()

    @staticmethod
    def from_json(raw: str) -> ItemDecision:
        """Read a stored decision."""
        data = json.loads(raw)
        return ItemDecision(decision=str(data.get("d") or ""), at=float(data.get("at") or 0.0),
                            reason=str(data.get("r") or ""), object=str(data.get("o") or ""),
                            record_id=str(data.get("id") or ""), people=[str(p) for p in data.get("p") or []],
                            trigger=str(data.get("t") or ""))


class ItemTrailRepo:
    """Per-item decisions per mailbox, keyed by an HMAC of the item's identifier, kept 30 days."""

    def __init__(self, client: redis.Redis, keys: Keys, hasher: Callable[[str], str]) -> None:
        self._r = client
        self._keys = keys
        self._hash = hasher
        self._record = client.register_script(_RECORD)

    def _key(self, mid: str, identifier: str) -> str:
        # Message-IDs compare without case (some servers change it); UIDs are kept as given.
        return self._keys("trail", mid, self._hash(identifier.strip().lower()))

    def record(self, mid: str, decisions: Iterable[tuple[str, ItemDecision]]) -> None:
        """Keep the latest decision per identifier (one round trip for a batch of up to ``RECORD_CHUNK``)."""
        rows = list(decisions)
        for start in range(0, len(rows), RECORD_CHUNK):
            chunk = rows[start:start + RECORD_CHUNK]
            keys = [self._key(mid, identifier) for identifier, _ in chunk]
            self._record(keys=keys, args=[TRAIL_TTL_SECONDS, *(decision.as_json() for _, decision in chunk)])

    def get(self, mid: str, identifier: str) -> ItemDecision | None:
        """The latest decision about ``identifier`` in this mailbox, or None."""
        raw = self._r.get(self._key(mid, identifier))
        return ItemDecision.from_json(str(raw)) if raw else None
