"""One TLS context per process and trust bundle: the bundle is not loaded again for every connection."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from backend.net import outbound
from backend.net.guard import HostGuard
from backend.net.outbound import make_session, tls_context, trust_bundle
from sandbox.server import FakeServer
from sandbox.tls import TestCA
from tests.net.helpers import session_for, table_resolver


@pytest.fixture
def server(ca: TestCA) -> Iterator[FakeServer]:
    """An https server on 127.0.0.1 (certificate for localhost and ews.test.example)."""
    app = Flask("tls")
    app.add_url_rule("/hello", "hello", lambda: "hello")
    fake = FakeServer(app, ca.issue("tls-ctx", hosts=("localhost", "127.0.0.1", "ews.test.example"))).start()
    yield fake
    fake.stop()


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every trust-store load from now on (no context cached from earlier tests)."""
    monkeypatch.setattr(outbound, "_contexts", {})
    calls: list[Any] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        calls.append((args, kwargs))
        original(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    return calls


def test_many_connections_load_the_bundle_once(ca: TestCA, server: FakeServer, loads: list[Any]) -> None:
    plain = make_session(ca.ca_path, timeout=5)
    guard = HostGuard([f"ews.test.example:{server.port}"],
                      resolver=table_resolver({"ews.test.example": ["127.0.0.1"]}))
    guarded = session_for(ca, guard)
    for _ in range(4):
        # "Connection: close": every request opens (and verifies) a new TLS connection.
        assert plain.get(f"https://localhost:{server.port}/hello", headers={"Connection": "close"}).text == "hello"
        assert guarded.get(f"https://ews.test.example:{server.port}/hello",
                           headers={"Connection": "close"}).text == "hello"
    assert len(loads) == 1


def test_a_request_does_not_look_at_the_bundle_on_disk_again(ca: TestCA, server: FakeServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    session = make_session(ca.ca_path, timeout=5)
    bundle = str(session.verify)
    assert session.get(f"https://localhost:{server.port}/hello").text == "hello"
    looks: list[str] = []
    real_stat = os.stat

    def counted(path: Any, *args: Any, **kwargs: Any) -> Any:
        if os.fspath(path) == bundle:
            looks.append(bundle)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counted)
    for _ in range(3):
        assert session.get(f"https://localhost:{server.port}/hello").text == "hello"
        assert session.get(f"https://localhost:{server.port}/hello", headers={"Connection": "close"}).text == "hello"
    assert looks == []


def test_the_shared_context_still_checks_names_and_trust(ca: TestCA, server: FakeServer, tmp_path: Path) -> None:
    context = tls_context(str(trust_bundle(ca.ca_path)))
    assert context is tls_context(str(trust_bundle(ca.ca_path)))
    assert context.check_hostname and context.verify_mode is ssl.CERT_REQUIRED
    other = TestCA(str(tmp_path))  # a CA that did not sign the server's certificate
    with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        make_session(other.ca_path, timeout=5).get(f"https://localhost:{server.port}/hello")
