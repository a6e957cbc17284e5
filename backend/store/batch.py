"""Reads of several repositories sent to Redis as one pipeline (one round trip for a request's reads).

A repository's ``*_in(batch, ...)`` method queues one command on ``batch.pipe`` and returns a
:class:`Deferred`; :meth:`Batch.run` sends them all and fills every Deferred with its decoded value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import redis

T = TypeVar("T")

_UNSET: Any = object()


class Deferred(Generic[T]):
    """A value a batch reads: available once the batch has run."""

    def __init__(self, decode: Callable[[Any], T]) -> None:
        self._decode = decode
        self._value: Any = _UNSET

    def fill(self, raw: Any) -> None:
        """Decode the command's reply."""
        self._value = self._decode(raw)

    @property
    def value(self) -> T:
        """The decoded value (the batch must have run)."""
        if self._value is _UNSET:
            raise RuntimeError("the batch has not run yet")
        value: T = self._value
        return value


class Batch:
    """Commands of several repositories, sent in one pipeline (no transaction)."""

    def __init__(self, client: redis.Redis) -> None:
        self.pipe = client.pipeline(transaction=False)
        self._pending: list[Deferred[Any]] = []

    def defer(self, decode: Callable[[Any], T]) -> Deferred[T]:
        """The value of the command just queued on :attr:`pipe`, decoded by ``decode``."""
        deferred = Deferred(decode)
        self._pending.append(deferred)
        return deferred

    def run(self) -> None:
        """Send every queued command at once and fill the Deferreds."""
        with self.pipe as pipe:
            replies = pipe.execute()
        for deferred, raw in zip(self._pending, replies, strict=True):
            deferred.fill(raw)
