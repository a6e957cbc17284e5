"""Google's per-user limits in this process: requests in flight, quota units a minute, Retry-After.

Gmail counts quota per user per minute (15,000 units; ``messages.get`` and ``messages.list`` cost
5, ``history.list`` 2) and answers 429 / 403 ``userRateLimitExceeded`` beyond it or beyond a few
concurrent requests. Every connector open on one account in this process shares one
:class:`UserGate` (:func:`gate_for`), so a hold-off given to one request holds back all of them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from backend.connectors.gates import GateRegistry, HoldOffGate
from backend.errors import Throttled

MAX_IN_FLIGHT = 4
QUOTA_UNITS_PER_MINUTE = 15_000
_MINUTE = 60.0


class UserGate(HoldOffGate):
    """At most ``slots`` requests in flight and ``quota`` units a minute for one account."""

    def __init__(self, slots: int = MAX_IN_FLIGHT, quota: int = QUOTA_UNITS_PER_MINUTE) -> None:
        super().__init__(slots)
        self.quota = quota
        self._spent: deque[tuple[float, int]] = deque()

    def _room_at(self, units: int, now: float) -> float:
        """When ``units`` more fit in the rolling minute (``now`` when they fit at once)."""
        while self._spent and self._spent[0][0] <= now - _MINUTE:
            self._spent.popleft()
        used = sum(u for _, u in self._spent)
        if used + units <= self.quota or not self._spent:
            return now
        freed = 0
        for moment, spent in self._spent:
            freed += spent
            if used - freed + units <= self.quota:
                return moment + _MINUTE
        return now + _MINUTE

    @contextmanager
    def slot(self, units: int, max_wait: float) -> Iterator[None]:
        """Hold one slot and spend ``units`` while a request runs.

        A Retry-After hold-off longer than ``max_wait`` raises Throttled; waiting for quota room is
        always done here (at most a minute by construction): a large backfill needs several minutes
        of quota whatever we do, and waiting in the run beats retrying the whole job.
        """
        units = max(0, min(units, self.quota))
        with self._cond:
            while True:
                now = time.monotonic()
                if self._not_before - now > max_wait:
                    raise Throttled("Google asked us to slow down for this mailbox.",
                                    retry_after=self._not_before - now)
                ready = max(self._not_before, self._room_at(units, now))
                if ready > now:
                    self._cond.wait(ready - now)
                elif self._free < 1:
                    self._cond.wait()
                else:
                    self._free -= 1
                    self._spent.append((now, units))
                    break
        try:
            yield
        finally:
            self._release(1)


_gates: GateRegistry[UserGate] = GateRegistry(UserGate)


def gate_for(key: str) -> UserGate:
    """The process-wide gate of one account (shared by every connector open on it)."""
    return _gates.get(key)
