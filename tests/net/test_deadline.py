"""Request deadlines: a dripping server is cut by its request's or the overall deadline; keep-alive moves on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from backend.net.deadline import RequestBudget
from backend.net.guard import HostGuard
from sandbox.ews import FakeEwsState, start_fake_ews
from sandbox.tls import CertPair, TestCA
from tests.net.helpers import session_for


@pytest.fixture
def dripping(ca: TestCA, server_cert: CertPair) -> Iterator[tuple[FakeEwsState, Any]]:
    """A server that sends its headers at once, then the body one byte every 0.2 s."""
    state, server = start_fake_ews(server_cert)
    yield state, server
    server.stop()


def test_a_request_deadline_cuts_a_dripping_response(ca: TestCA, dripping: tuple[FakeEwsState, Any]) -> None:
    state, server = dripping
    guard = HostGuard([f"127.0.0.1:{server.port}"])
    budget = RequestBudget(request_seconds=1.5)
    session = session_for(ca, guard, budget=budget)
    state.inject_failure("drip", retry_after=0.2)  # never idle for the 5 s read timeout
    started = time.monotonic()
    with pytest.raises(requests.exceptions.RequestException):
        session.get(state.amurl).content  # noqa: B018 - reading the body is the point
    assert time.monotonic() - started < 1.5 + 1.0
    assert budget.timed_out()
    # The next request on the same session gets a fresh deadline and a fresh connection.
    assert session.get(state.amurl).json()["keys"]
    assert not budget.timed_out()


def test_an_overall_deadline_bounds_every_request(ca: TestCA, dripping: tuple[FakeEwsState, Any]) -> None:
    state, server = dripping
    guard = HostGuard([f"127.0.0.1:{server.port}"])
    budget = RequestBudget(request_seconds=30, deadline=time.monotonic() + 1.0)
    state.inject_failure("drip", retry_after=0.2)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.RequestException):
        session_for(ca, guard, budget=budget).get(state.amurl, stream=True).content  # noqa: B018
    assert time.monotonic() - started < 2.0 and budget.timed_out()


def test_a_kept_alive_connection_moves_to_the_deadline_of_its_next_request(
        ca: TestCA, dripping: tuple[FakeEwsState, Any]) -> None:
    # Request 1 ends at once; request 2 reuses its connection and drips past request 1's deadline
    # but within its own: it must not be cut by the deadline of a request that is long over.
    state, server = dripping
    guard = HostGuard([f"127.0.0.1:{server.port}"])
    budget = RequestBudget(request_seconds=1.0)
    session = session_for(ca, guard, budget=budget)
    assert session.get(state.amurl).json()["keys"]
    time.sleep(0.5)
    state.inject_failure("drip", retry_after=0.02)  # the 404 page, ~35 bytes: about 0.7 s
    started = time.monotonic()
    resp = session.get(f"{server.url}/nothing-here")
    assert resp.status_code == 404 and resp.content.endswith(b"</html>")
    assert time.monotonic() - started > 0.55  # it did cross request 1's deadline
    adapter = session.get_adapter(state.amurl)
    assert isinstance(adapter, HTTPAdapter)
    pools = list(adapter.poolmanager.pools._container.values())
    assert [p.num_connections for p in pools] == [1]  # one connection, reused
    assert not budget.timed_out()
