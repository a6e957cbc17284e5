"""Name resolution within a time limit: slow resolvers are abandoned, fast ones answer through the worker."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from backend.net.guard import HostGuard
from backend.net.resolve import ResolveTimeout
from tests.net.helpers import PUBLIC, slow_resolver, table_resolver


def test_a_slow_resolver_is_abandoned_after_the_dns_timeout() -> None:
    release, calls = threading.Event(), list[str]()
    guard = HostGuard(["127.0.0.1"], resolver=slow_resolver(release, calls), dns_timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(ResolveTimeout):
            guard.check("https://slow.example/")
        assert 0.4 < time.monotonic() - started < 1.5
        started = time.monotonic()
        with pytest.raises(TimeoutError):  # a caller's shorter limit wins
            guard.check("https://slow.example/", timeout=0.1)
        assert time.monotonic() - started < 0.8
        assert calls == ["slow.example", "slow.example"]
    finally:
        release.set()


def test_a_fast_resolver_answers_through_the_worker() -> None:
    guard = HostGuard(resolver=table_resolver({"mail.example.com": [PUBLIC]}), dns_timeout=0.5)
    assert guard.check("https://mail.example.com/") == [(socket.AF_INET, (PUBLIC, 443))]
    with pytest.raises(socket.gaierror):
        guard.check("https://nowhere.example.com/")
