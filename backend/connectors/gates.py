"""What the per-mailbox gates of the HTTP clients share: a slot count, a Retry-After hold-off, one gate a key.

Each provider's gate decides how a request gets its slot (:meth:`slot`); the hold-off, the release
and the process-wide registry are the same for all.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar


class HoldOffGate:
    """Free slots and a "nothing before" moment for one mailbox, guarded by one condition."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = slots
        self._not_before = 0.0
        self._cond = threading.Condition()

    def _release(self, count: int) -> None:
        with self._cond:
            self._free += count
            self._cond.notify_all()

    def hold_off(self, seconds: float) -> None:
        """Send nothing more for this mailbox until ``seconds`` from now."""
        with self._cond:
            self._not_before = max(self._not_before, time.monotonic() + max(0.0, seconds))
            self._cond.notify_all()


G = TypeVar("G", bound=HoldOffGate)


class GateRegistry(Generic[G]):
    """The process-wide gate of each mailbox key (shared by every connector open on it)."""

    def __init__(self, make: Callable[[], G]) -> None:
        self._make = make
        # Weak values: a gate lives as long as some connector on its mailbox does, so idle mailboxes
        # do not accumulate in a long-running worker.
        self._gates: weakref.WeakValueDictionary[str, G] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def get(self, key: str) -> G:
        """The gate of ``key``, made on first use."""
        with self._lock:
            gate = self._gates.get(key)
            if gate is None:
                gate = self._make()
                self._gates[key] = gate
            return gate
