"""Graph's per-mailbox limits in this process: at most 4 requests in flight, and Retry-After hold-offs.

Graph counts concurrency per app per mailbox, so every connector open on one mailbox in this
process shares one :class:`MailboxGate` (:func:`gate_for`); a Retry-After given to one request
holds back all of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from backend.connectors.gates import GateRegistry, HoldOffGate
from backend.errors import Throttled

# Graph allows 4 concurrent requests per app per mailbox; more only earns 429s.
MAX_IN_FLIGHT = 4


class MailboxGate(HoldOffGate):
    """At most ``slots`` requests in flight for one mailbox, and none before a Retry-After has passed."""

    def __init__(self, slots: int = MAX_IN_FLIGHT) -> None:
        super().__init__(slots)

    @contextmanager
    def slot(self, count: int = 1, max_wait: float | None = None) -> Iterator[None]:
        """Hold ``count`` slots (atomically, so two batches cannot deadlock) while a request runs.

        A hold-off longer than ``max_wait`` raises Throttled at once instead of blocking the run.
        """
        count = max(1, min(count, self.slots))
        with self._cond:
            while True:
                now = time.monotonic()
                if now < self._not_before:
                    remaining = self._not_before - now
                    if max_wait is not None and remaining > max_wait:
                        raise Throttled("Microsoft Graph asked us to wait for this mailbox.", retry_after=remaining)
                    self._cond.wait(remaining)
                elif self._free < count:
                    self._cond.wait()
                else:
                    self._free -= count
                    break
        try:
            yield
        finally:
            self._release(count)


_gates: GateRegistry[MailboxGate] = GateRegistry(MailboxGate)


def gate_for(key: str) -> MailboxGate:
    """The process-wide gate of one mailbox (shared by every connector open on it)."""
    return _gates.get(key)
