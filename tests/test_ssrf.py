"""The outbound host guard: refused hosts and addresses, allow-list rules, and enforcement at connect time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, redirect
from requests.adapters import HTTPAdapter

from backend.config import ConfigError, Settings
from backend.net.outbound import trust_bundle
from backend.net.ssrf import HostGuard, HostNotAllowed, HostRule, RequestBudget, ResolveTimeout, guarded_session
from sandbox.ews import FakeEwsState, start_fake_ews
from sandbox.server import FakeServer
from sandbox.tls import CertPair, TestCA

PUBLIC = "93.184.216.34"


def _resolver(table: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return [((socket.AF_INET6 if ":" in a else socket.AF_INET), (a, port)) for a in table[host]]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.example.com/EWS/Exchange.asmx",  # not https
        "ftp://mail.example.com/",
        "https://user:secret@mail.example.com/EWS/Exchange.asmx",  # credentials in the URL
        "https://user@mail.example.com/",
        "https:///EWS/Exchange.asmx",  # no host
        "https://127.0.0.1/EWS/Exchange.asmx",  # loopback
        "https://127.8.9.10/",
        "https://[::1]/EWS/Exchange.asmx",
        "https://10.0.0.1/",  # private
        "https://172.16.5.4/",
        "https://192.168.1.1/",
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "https://[fe80::1]/",
        "https://100.64.1.1/",  # CGNAT
        "https://100.100.100.200/",  # Alibaba metadata (CGNAT)
        "https://0.0.0.0/",  # unspecified
        "https://[::]/",
        "https://224.0.0.1/",  # multicast
        "https://[ff02::1]/",
        "https://240.0.0.1/",  # reserved
        "https://[fd00:ec2::254]/",  # AWS IPv6 metadata (ULA)
        "https://[fc00::1]/",
        "https://[::ffff:127.0.0.1]/",  # IPv4-mapped
        "https://[::ffff:169.254.169.254]/",
        "https://[2002:7f00:1::1]/",  # 6to4 around 127.0.0.1
        "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 around 169.254.169.254
        "https://2130706433/",  # decimal 127.0.0.1
        "https://0177.0.0.1/",  # octal
        "https://0x7f.0.0.1/",  # hex
        "https://0x7f000001/",
        "https://127.1/",  # short form
        "https://017700000001/",
        "https://localhost/",  # a name for loopback
        "https://[fe80::1%25eth0]/",  # zone id
    ],
)
def test_refused_hosts(url: str) -> None:
    with pytest.raises(HostNotAllowed) as caught:
        HostGuard().check(url)
    assert caught.value.code == "host_not_allowed"


@pytest.mark.parametrize(
    ("name", "addresses"),
    [
        ("internal.example.com", ["10.20.30.40"]),
        ("metadata.example.com", ["169.254.169.254"]),
        ("rebind.example.com", [PUBLIC, "127.0.0.1"]),  # one bad address is enough
        ("v6.example.com", ["::1"]),
        ("mapped.example.com", ["::ffff:10.0.0.1"]),
    ],
)
def test_names_resolving_to_refused_addresses(name: str, addresses: list[str]) -> None:
    guard = HostGuard(resolver=_resolver({name: addresses}))
    with pytest.raises(HostNotAllowed):
        guard.check(f"https://{name}/EWS/Exchange.asmx")


def test_public_hosts_pass() -> None:
    guard = HostGuard(resolver=_resolver({"mail.example.com": [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"]}))
    assert len(guard.check("https://mail.example.com/EWS/Exchange.asmx")) == 2
    assert guard.check(f"https://{PUBLIC}:8443/") == [(socket.AF_INET, (PUBLIC, 8443))]


@pytest.mark.parametrize(
    ("patterns", "url", "addresses", "allowed"),
    [
        (["mail.corp.example"], "https://mail.corp.example/EWS/Exchange.asmx", ["10.1.2.3"], True),
        (["mail.corp.example"], "https://mail.corp.example:8443/", ["10.1.2.3"], True),
        (["mail.corp.example:443"], "https://mail.corp.example:8443/", ["10.1.2.3"], False),
        (["mail.corp.example"], "https://other.corp.example/", ["10.1.2.3"], False),
        (["*.corp.example"], "https://ews.corp.example/", ["10.1.2.3"], True),
        (["*.corp.example"], "https://corp.example/", ["10.1.2.3"], False),
        (["*.corp.example"], "https://evilcorp.example/", ["10.1.2.3"], False),
        (["127.0.0.1:8443"], "https://127.0.0.1:8443/", [], True),
        (["127.0.0.1:8443"], "https://127.0.0.1:8444/", [], False),
        (["127.0.0.1:8443"], "https://localhost:8443/", ["127.0.0.1"], True),  # by resolved address
        (["[::1]:8443"], "https://[::1]:8443/", [], True),
        (["10.20.0.0/16"], "https://ews.corp.example/", ["10.20.5.5"], True),
        (["10.20.0.0/16"], "https://ews.corp.example/", ["10.21.5.5"], False),
        (["10.20.0.0/16"], "https://ews.corp.example/", ["10.20.5.5", "10.30.5.5"], False),
    ],
)
def test_allow_list(patterns: list[str], url: str, addresses: list[str], allowed: bool) -> None:
    host = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    guard = HostGuard(patterns, resolver=_resolver({host: addresses}))
    if allowed:
        guard.check(url)
    else:
        with pytest.raises(HostNotAllowed):
            guard.check(url)


def test_the_metadata_address_is_refused_even_when_a_name_is_allowed_elsewhere() -> None:
    guard = HostGuard(["mail.corp.example"], resolver=_resolver({"evil.example": ["169.254.169.254"]}))
    with pytest.raises(HostNotAllowed):
        guard.check("https://evil.example/")


@pytest.mark.parametrize("pattern", ["", "*", "mail.*.example", "host:port", "[::1", "10.0.0.0/99", "h:70000"])
def test_bad_allow_list_patterns_stop_the_app(pattern: str) -> None:
    if not pattern:
        assert Settings.load({"SIDEBAR_ENV": "development", "EWS_ALLOWED_HOSTS": pattern}).EWS_ALLOWED_HOSTS == ()
        return
    with pytest.raises(ValueError):
        HostRule.parse(pattern)
    with pytest.raises(ConfigError, match="EWS_ALLOWED_HOSTS"):
        Settings.load({"SIDEBAR_ENV": "development", "EWS_ALLOWED_HOSTS": pattern})


# ---- enforcement on real connections ---------------------------------------------------------------
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


def _session(ca: TestCA, guard: HostGuard, **kw: Any) -> requests.Session:
    return guarded_session(guard, verify=trust_bundle(ca.ca_path), timeout=5, **kw)


def test_the_connection_goes_to_the_checked_address(ca: TestCA, named_server: FakeServer) -> None:
    port = named_server.port
    guard = HostGuard([f"ews.test.example:{port}"], resolver=_resolver({"ews.test.example": ["127.0.0.1"]}))
    # The name only exists in our resolver: the socket goes to the address the guard checked, and
    # TLS is still verified against the name.
    resp = _session(ca, guard).get(f"https://ews.test.example:{port}/hello")
    assert resp.text == "hello"


def test_dns_rebinding_between_check_and_connect_is_refused(ca: TestCA, named_server: FakeServer) -> None:
    answers = iter([[PUBLIC], ["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
        return [(socket.AF_INET, (a, port)) for a in next(answers)]

    guard = HostGuard(resolver=rebinding)
    url = f"https://ews.test.example:{named_server.port}/hello"
    guard.check(url)  # a check ahead of time sees a public address...
    with pytest.raises(HostNotAllowed):  # ...but the connection resolves and checks again
        _session(ca, guard).get(url)
    assert named_server.recorder.calls == []


@pytest.mark.parametrize("path", ["/to-private", "/to-http"])
def test_every_redirect_hop_is_checked(ca: TestCA, named_server: FakeServer, path: str) -> None:
    port = named_server.port
    guard = HostGuard([f"ews.test.example:{port}"], resolver=_resolver({"ews.test.example": ["127.0.0.1"]}))
    with pytest.raises(HostNotAllowed):
        _session(ca, guard).get(f"https://ews.test.example:{port}{path}")
    assert len(named_server.recorder.calls) == 1


def test_the_environment_cannot_change_trust_or_add_a_proxy(ca: TestCA, named_server: FakeServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://10.0.0.1:3128")
    port = named_server.port
    guard = HostGuard([f"ews.test.example:{port}"], resolver=_resolver({"ews.test.example": ["127.0.0.1"]}))
    assert _session(ca, guard).get(f"https://ews.test.example:{port}/hello").text == "hello"


def test_untrusted_certificates_fail(named_server: FakeServer, tmp_path: Any) -> None:
    other = TestCA(str(tmp_path / "other"))
    port = named_server.port
    guard = HostGuard([f"ews.test.example:{port}"], resolver=_resolver({"ews.test.example": ["127.0.0.1"]}))
    with pytest.raises(requests.exceptions.SSLError):
        guarded_session(guard, verify=trust_bundle(other.ca_path), timeout=5).get(
            f"https://ews.test.example:{port}/hello")


def test_a_spent_deadline_sends_nothing(ca: TestCA, named_server: FakeServer) -> None:
    port = named_server.port
    guard = HostGuard([f"ews.test.example:{port}"], resolver=_resolver({"ews.test.example": ["127.0.0.1"]}))
    with pytest.raises(requests.exceptions.Timeout):
        _session(ca, guard, deadline=time.monotonic() - 1).get(f"https://ews.test.example:{port}/hello")
    assert named_server.recorder.calls == []


# ---- bounded in time: slow DNS, dripping servers ---------------------------------------------------
def _slow_resolver(release: threading.Event, calls: list[str]) -> Any:
    def resolve(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
        calls.append(host)
        release.wait(20)
        return [(socket.AF_INET, ("127.0.0.1", port))]

    return resolve


def test_a_slow_resolver_is_abandoned_after_the_dns_timeout() -> None:
    release, calls = threading.Event(), list[str]()
    guard = HostGuard(["127.0.0.1"], resolver=_slow_resolver(release, calls), dns_timeout=0.5)
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
    guard = HostGuard(resolver=_resolver({"mail.example.com": [PUBLIC]}), dns_timeout=0.5)
    assert guard.check("https://mail.example.com/") == [(socket.AF_INET, (PUBLIC, 443))]
    with pytest.raises(socket.gaierror):
        guard.check("https://nowhere.example.com/")


def test_a_slow_name_inside_a_request_is_a_connect_timeout(ca: TestCA) -> None:
    release, calls = threading.Event(), list[str]()
    guard = HostGuard(["127.0.0.1"], resolver=_slow_resolver(release, calls))
    session = _session(ca, guard, deadline=time.monotonic() + 1.0)
    started = time.monotonic()
    try:
        with pytest.raises(requests.exceptions.ConnectTimeout):
            session.get("https://slow.example:9/hello")
    finally:
        release.set()
    assert time.monotonic() - started < 2.0


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
    session = _session(ca, guard, budget=budget)
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
        _session(ca, guard, budget=budget).get(state.amurl, stream=True).content  # noqa: B018
    assert time.monotonic() - started < 2.0 and budget.timed_out()


def test_a_kept_alive_connection_moves_to_the_deadline_of_its_next_request(
        ca: TestCA, dripping: tuple[FakeEwsState, Any]) -> None:
    # Request 1 ends at once; request 2 reuses its connection and drips past request 1's deadline
    # but within its own: it must not be cut by the deadline of a request that is long over.
    state, server = dripping
    guard = HostGuard([f"127.0.0.1:{server.port}"])
    budget = RequestBudget(request_seconds=1.0)
    session = _session(ca, guard, budget=budget)
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
