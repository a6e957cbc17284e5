"""What the push fakes share: a delivery thread that POSTs queued callbacks to the app, and routing.

The fake Graph (change and lifecycle notifications) and the fake Pub/Sub (Gmail pushes) call the
app back the way the real services do: from elsewhere, later. Each keeps an :class:`Outbox` whose
one thread makes the deliveries in order; ``flush`` waits for them, ``close`` stops the thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


def routed(routes: Mapping[str, str], url: str) -> str:
    """Where ``url`` really goes: its origin replaced by ``routes[origin]`` when one is given."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return routes.get(origin, origin) + url[len(origin):]


class Outbox(Generic[T]):
    """Jobs delivered one at a time by a daemon thread started on the first :meth:`put`."""

    def __init__(self, name: str, deliver: Callable[[T], None]) -> None:
        self._name = name
        self._deliver = deliver
        self._jobs: queue.Queue[tuple[T] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, job: T) -> None:
        """Queue one delivery."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._jobs.put((job,))

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            try:
                if item is None:
                    return
                self._deliver(item[0])
            finally:
                self._jobs.task_done()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued delivery was made (or ``timeout`` seconds passed)."""
        deadline = time.monotonic() + timeout
        while self._jobs.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        """Stop the delivery thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join(timeout=5)
