"""Counting the round trips a piece of code makes to Redis (for tests and ``bench/``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis


class RoundTrips:
    """Counts what reaches the Redis server: one per command sent alone, one per pipeline."""

    def __init__(self) -> None:
        self.count = 0
        self._original = redis.connection.AbstractConnection.send_packed_command

    @contextmanager
    def counting(self) -> Iterator[None]:
        """Count while inside (wraps redis-py's one send method)."""
        counter = self
        original = self._original

        def send(conn: Any, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            original(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
        try:
            yield
        finally:
            redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
