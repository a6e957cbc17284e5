"""The fake Graph and Salesforce keep connections open, as the real services do (TLS once per connection)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from backend.net.outbound import make_session
from sandbox.harness.graph import GraphHarness
from sandbox.tls import CertPair, TestCA


@pytest.fixture
def graph(ca: TestCA, server_cert: CertPair) -> Iterator[GraphHarness]:
    """The fake Microsoft 365 tenant (identity and Graph)."""
    harness = GraphHarness(server_cert, ca.ca_path)
    yield harness
    harness.close()


def _answers(ca: TestCA, url: str, paths: list[str], **headers: str) -> list[requests.Response]:
    """GETs of ``paths`` from ``url`` through one outbound session (as the connectors make them)."""
    session = make_session(ca.ca_path, timeout=5)
    try:
        return [session.get(f"{url}{path}", headers=headers, timeout=5) for path in paths]
    finally:
        session.close()


def _connections(server: Any) -> set[int]:
    """The connections the server's recorded requests came on."""
    return {c.conn for c in server.recorder.calls}


def test_one_graph_connection_serves_several_requests(ca: TestCA, graph: GraphHarness) -> None:
    answers = _answers(ca, graph.graph_server.url, ["/v1.0/me"] * 4)
    assert len(_connections(graph.graph_server)) == 1
    for answer in answers:
        assert answer.raw.version == 11
        assert answer.headers.get("Connection", "").lower() != "close"
        assert int(answer.headers["Content-Length"]) == len(answer.content)
    assert len(graph.graph_server.recorder.calls) == 4


def test_one_salesforce_connection_serves_several_requests(ca: TestCA, fake_salesforce: Any) -> None:
    paths = ["/services/data/", "/services/data/v62.0/limits", "/services/data/"]
    answers = _answers(ca, fake_salesforce.url, paths)
    assert len(_connections(fake_salesforce.server)) == 1
    assert all(a.headers.get("Connection", "").lower() != "close" for a in answers)
    assert len(fake_salesforce.server.recorder.calls) == 3


def test_a_client_that_asks_to_close_gets_a_new_connection(ca: TestCA, fake_salesforce: Any) -> None:
    _answers(ca, fake_salesforce.url, ["/services/data/"] * 2, Connection="close")
    assert len(_connections(fake_salesforce.server)) == 2
