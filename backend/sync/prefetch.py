"""Reading the mailbox ahead of the writes: a connector's pages pulled by a thread of their own.

While the run writes a batch to Salesforce (waiting on its answers), the mailbox's next pages are
already on their way. The reader is bounded (at most ``limit`` pages wait, so memory holds about
one batch more), hands pages over in the connector's order, and raises the connector's error in
the run's thread at the point the run would have met it: what was read before it is written and
its cursors saved first. Cursors themselves stay the run's business: a page read ahead is only a
page; its cursor is saved after the writes that cover it, as without the reader.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# How long the run waits for the reader to end once the source has ended (it is on its way out).
JOIN_SECONDS = 30.0
# How long a run that stops early (an error, its deadline) waits for a reader still in a request:
# briefly, so the run's deadline holds; the daemon reader drops what it gets and ends by itself
# (its request may last up to the request timeout, far past a deadline that has just fired).
CLOSE_JOIN_SECONDS = 0.5


class _End:
    """The reader's last word: no more pages, or the error that ended them."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class ReadAhead(Generic[T]):
    """``source``'s items, read by a daemon thread while fewer than ``limit`` (by ``weight``) wait."""

    def __init__(self, source: Iterator[T], limit: int, weight: Callable[[T], int] = lambda _: 1,
                 name: str = "read-ahead") -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._source = source
        self._limit = limit
        self._weight = weight
        self._waiting: deque[tuple[T | _End, int]] = deque()
        self._held = 0  # the weight of what waits
        self._cond = threading.Condition()
        self._stopped = False
        self._ended = False
        # The run's context (context variables) goes with the reader.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._read,), name=name, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        """The reader thread: pull items until the source ends, fails, or the consumer stops."""
        end = _End()
        try:
            for item in self._source:
                if not self._put(item, max(0, self._weight(item))):
                    return
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer and raised there)
            end = _End(exc)
        finally:
            close = getattr(self._source, "close", None)
            if callable(close) and self._stopped:
                try:
                    close()  # a generator left mid-way: its finally blocks run here, in its own thread
                except Exception as exc:  # noqa: BLE001 - the run has stopped: nothing waits for this
                    log.debug("read-ahead source failed while closing: %s", type(exc).__name__)
        self._put(end, 0)

    def _put(self, item: T | _End, weight: int) -> bool:
        """Queue ``item`` once what waits is under the limit; False once the consumer has stopped."""
        with self._cond:
            # An end always goes in (it holds nothing); a page waits for room. One page may pass
            # the limit: the bound is ``limit`` plus one page.
            while not self._stopped and not isinstance(item, _End) and self._held >= self._limit:
                self._cond.wait()
            if self._stopped:
                return False
            self._waiting.append((item, weight))
            self._held += weight
            self._cond.notify_all()
            return True

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._ended:
            raise StopIteration
        with self._cond:
            while not self._waiting:
                self._cond.wait()
            item, weight = self._waiting.popleft()
            self._held -= weight
            self._cond.notify_all()
        if isinstance(item, _End):
            self._ended = True
            self._thread.join(JOIN_SECONDS)
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    @property
    def held(self) -> int:
        """The weight of what was read and waits for the run."""
        with self._cond:
            return self._held

    def close(self) -> None:
        """Stop reading (a request under way finishes), drop what waits, and wait for the reader to end."""
        with self._cond:
            self._stopped = True
            self._waiting.clear()
            self._held = 0
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(CLOSE_JOIN_SECONDS)
        self._ended = True
