"""Counting Redis round trips: one per command sent alone, one per pipeline (tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis


class RoundTrips:
    """What reaches the Redis server while :meth:`counting`: one per write of a command or pipeline."""

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def counting(self) -> Iterator[RoundTrips]:
        """Count while inside (wraps redis-py's one send method of every connection, in this process)."""
        counter = self
        original = redis.connection.AbstractConnection.send_packed_command

        def send(conn: Any, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            original(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
        try:
            yield self
        finally:
            redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


@contextmanager
def round_trips() -> Iterator[RoundTrips]:
    """A fresh counter, counting while inside."""
    trips = RoundTrips()
    with trips.counting():
        yield trips
