"""Guarded sessions: enforcement on real connections (the checked address, redirects, trust, deadlines)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, redirect

from backend.net.adapter import guarded_session
from backend.net.guard import HostGuard, HostNotAllowed
from backend.net.outbound import trust_bundle
from sandbox.server import FakeServer
from sandbox.tls import CertPair, TestCA
from tests.net.helpers import PUBLIC, session_for, slow_resolver, table_resolver


@pytest.fixture
def named_server(ca: TestCA) -> Iterator[FakeServer]:
    """An https server on 127.0.0.1 whose certificate names ews.test.example (not localhost)."""
    app = Flask("named")

    @app.get("/hello")
    def hello() -> str:
        return "hello"

    @app.get("/to-private")
    def to_private() -> Any:
        return redirect("https://10.9.8.7/secret")

    @app.get("/to-http")
    def to_http() -> Any:
        return redirect("http://ews.test.example/")

    cert: CertPair = ca.issue("ews-test-example", hosts=("ews.test.example",))
    server = FakeServer(app, cert).start()
    yield server
    server.stop()


def test_the_connection_goes_to_the_checked_address(ca: TestCA, named_server: FakeServer) -> None:
    port = named_server.port
    guard = HostGuard([f"ews.test.example:{port}"], resolver=table_resolver({"ews.test.example": ["127.0.0.1"]}))
    # The name only exists in our resolver: the socket goes to the address the guard checked, and
    # TLS is still verified against the name.
    resp = session_for(ca, guard).get(f"https://ews.test.example:{port}/hello")
    assert resp.text == "hello"


def test_dns_rebinding_between_check_and_connect_is_refused(ca: TestCA, named_server: FakeServer) -> None:
    answers = iter([[PUBLIC], ["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
        return [(socket.AF_INET, (a, port)) for a in next(answers)]

    guard = HostGuard(resolver=rebinding)
    url = f"https://ews.test.example:{named_server.port}/hello"
    guard.check(url)  # a check ahead of time sees a public address...
    with pytest.raises(HostNotAllowed):  # ...but the connection resolves and checks again
        session_for(ca, guard).get(url)
    assert named_server.recorder.calls == []


@pytest.mark.parametrize("path", ["/to-private", "/to-http"])
def test_every_redirect_hop_is_checked(ca: TestCA, named_server: FakeServer, path: str) -> None:
    port = named_server.port
    guard = HostGuard([f"ews.test.example:{port}"], resolver=table_resolver({"ews.test.example": ["127.0.0.1"]}))
    with pytest.raises(HostNotAllowed):
        session_for(ca, guard).get(f"https://ews.test.example:{port}{path}")
    assert len(named_server.recorder.calls) == 1


def test_the_environment_cannot_change_trust_or_add_a_proxy(ca: TestCA, named_server: FakeServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://10.0.0.1:3128")
    port = named_server.port
    guard = HostGuard([f"ews.test.example:{port}"], resolver=table_resolver({"ews.test.example": ["127.0.0.1"]}))
    assert session_for(ca, guard).get(f"https://ews.test.example:{port}/hello").text == "hello"


def test_untrusted_certificates_fail(named_server: FakeServer, tmp_path: Any) -> None:
    other = TestCA(str(tmp_path / "other"))
    port = named_server.port
    guard = HostGuard([f"ews.test.example:{port}"], resolver=table_resolver({"ews.test.example": ["127.0.0.1"]}))
    with pytest.raises(requests.exceptions.SSLError):
        guarded_session(guard, verify=trust_bundle(other.ca_path), timeout=5).get(
            f"https://ews.test.example:{port}/hello")


def test_a_spent_deadline_sends_nothing(ca: TestCA, named_server: FakeServer) -> None:
    port = named_server.port
    guard = HostGuard([f"ews.test.example:{port}"], resolver=table_resolver({"ews.test.example": ["127.0.0.1"]}))
    with pytest.raises(requests.exceptions.Timeout):
        session_for(ca, guard, deadline=time.monotonic() - 1).get(f"https://ews.test.example:{port}/hello")
    assert named_server.recorder.calls == []


def test_a_slow_name_inside_a_request_is_a_connect_timeout(ca: TestCA) -> None:
    release, calls = threading.Event(), list[str]()
    guard = HostGuard(["127.0.0.1"], resolver=slow_resolver(release, calls))
    session = session_for(ca, guard, deadline=time.monotonic() + 1.0)
    started = time.monotonic()
    try:
        with pytest.raises(requests.exceptions.ConnectTimeout):
            session.get("https://slow.example:9/hello")
    finally:
        release.set()
    assert time.monotonic() - started < 2.0
