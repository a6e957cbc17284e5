"""Time limits for outbound requests that hold whatever the server does.

A per-read timeout does not bound a server that answers one byte just before each timeout. So
every request sent through a :class:`~backend.net.adapter.GuardedAdapter` gets a :class:`Deadline`:
the earliest of the overall deadline and ``request_seconds`` after the send (a
:class:`RequestBudget` holds both). Each connection that request uses (opened, TLS handshake,
sent, headers and body read) is attached to it, and a single watchdog thread shuts down
(``SHUT_RDWR``) the attached sockets when it passes, so a blocked ``recv`` returns at once and the
read fails. A kept-alive connection moves to the deadline of the next request that uses it.
:meth:`RequestBudget.timed_out` tells a caller that its failure was this cut, so it can say
"timeout" rather than "connection lost".
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class _Watchdog:
    """One daemon thread that runs callbacks at given ``time.monotonic()`` moments (deadlines)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` (quickly, without raising) in the watchdog thread at ``when``."""
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), callback))
            # (Re)started lazily: a forked worker process has no copy of the parent's thread.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="outbound-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, callback = heapq.heappop(self._heap)
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
            try:
                callback()
            except Exception:  # the watchdog must survive any callback
                log.exception("outbound watchdog callback failed")


_WATCHDOG = _Watchdog()


class Deadline:
    """A moment after which every connection attached to it is cut, so a blocked read returns at once."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self.cut = False  # a connection was shut down because of this deadline
        self._lock = threading.Lock()
        self._conns: set[Any] = set()
        _WATCHDOG.call_at(at, self._expire)

    def left(self) -> float:
        """Seconds until the deadline (negative once passed)."""
        return self.at - time.monotonic()

    def attach(self, conn: Any) -> None:
        """Watch ``conn`` (it has ``abort()`` and a ``sidebar_deadline`` slot); it leaves its earlier deadline."""
        previous = getattr(conn, "sidebar_deadline", None)
        if previous is not None and previous is not self:
            previous.detach(conn)
        conn.sidebar_deadline = self
        with self._lock:
            if not self.expired:
                self._conns.add(conn)
                return
            self.cut = True
        conn.abort()

    def detach(self, conn: Any) -> None:
        """Stop watching ``conn`` (closed, or used by a later request)."""
        with self._lock:
            self._conns.discard(conn)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            conns, self._conns = list(self._conns), set()
            self.cut = self.cut or bool(conns)
        for conn in conns:
            conn.abort()


class RequestBudget:
    """The time limits of one caller's requests: ``request_seconds`` per request, ``deadline`` overall.

    Shared by every adapter of one connection policy (exchangelib makes several sessions), so a
    caller can ask :meth:`timed_out` after a failure. Both limits are optional; with neither, only
    per-read timeouts apply.
    """

    def __init__(self, request_seconds: float | None = None, deadline: float | None = None) -> None:
        self.request_seconds = request_seconds
        self.deadline = deadline
        self._local = threading.local()

    def begin(self) -> Deadline | None:
        """The deadline of a request about to be sent from this thread (it becomes :meth:`current`)."""
        limits = [t for t in (self.deadline,
                              time.monotonic() + self.request_seconds if self.request_seconds else None)
                  if t is not None]
        scope = Deadline(min(limits)) if limits else None
        self._local.current = scope
        return scope

    def current(self) -> Deadline | None:
        """The deadline of this thread's latest request."""
        scope: Deadline | None = getattr(self._local, "current", None)
        return scope

    def left(self) -> float | None:
        """Seconds left before the overall deadline (None without one)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def timed_out(self) -> bool:
        """True when this thread's latest request was cut by its deadline, or the overall deadline passed."""
        scope = self.current()
        if scope is not None and scope.expired and scope.cut:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline
