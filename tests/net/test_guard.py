"""The host guard: refused hosts and addresses, allow-list rules, and bad patterns stopping the start."""

from __future__ import annotations

import socket

import pytest

from backend.config import ConfigError, Settings
from backend.net.guard import HostGuard, HostNotAllowed
from backend.net.hosts import HostRule
from tests.net.helpers import PUBLIC, table_resolver


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
    guard = HostGuard(resolver=table_resolver({name: addresses}))
    with pytest.raises(HostNotAllowed):
        guard.check(f"https://{name}/EWS/Exchange.asmx")


def test_public_hosts_pass() -> None:
    guard = HostGuard(resolver=table_resolver({"mail.example.com": [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"]}))
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
    guard = HostGuard(patterns, resolver=table_resolver({host: addresses}))
    if allowed:
        guard.check(url)
    else:
        with pytest.raises(HostNotAllowed):
            guard.check(url)


def test_the_metadata_address_is_refused_even_when_a_name_is_allowed_elsewhere() -> None:
    guard = HostGuard(["mail.corp.example"], resolver=table_resolver({"evil.example": ["169.254.169.254"]}))
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


def test_a_name_admitted_only_by_an_address_rule_is_said_so(caplog: pytest.LogCaptureFixture) -> None:
    # Issue 18: a network rule admits any name that resolves into it (rebind.example -> 127.0.0.1);
    # names are matched first, and a name that only an address rule lets through is logged.
    guard = HostGuard(["127.0.0.1", "mail.corp.example"],
                      resolver=table_resolver({"rebind.example": ["127.0.0.1"], "mail.corp.example": ["127.0.0.1"]}))
    with caplog.at_level("WARNING", logger="backend.net.guard"):
        assert guard.resolve("mail.corp.example", 3004)  # a name rule: nothing to say
        assert not caplog.records
        assert guard.resolve("rebind.example", 3004)  # documented: the name's DNS decides
    assert [r.getMessage() for r in caplog.records] == [
        "rebind.example admitted only because it resolves into an EWS_ALLOWED_HOSTS address rule (127.0.0.1)"]
    assert guard.admitted_by_name("mail.corp.example", 443) and not guard.admitted_by_name("rebind.example", 443)
