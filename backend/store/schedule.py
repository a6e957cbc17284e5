"""The run schedule (``P schedule``): a sorted set of mailbox ids scored by their next run time."""

from __future__ import annotations

import redis

from backend.store.keys import Keys

# Takes up to ARGV[3] members due by ARGV[1] and pushes each one's score to ARGV[2] (the lease), atomically.
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)
end
return due
"""


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
