"""The SSRF guard matrix, on the guard itself and through the real entry point (``POST /api/sync/exchange``).

Every hostile URL names the fake Exchange server's own loopback listener (or an internal address) in
another spelling, so a spelling that slipped past the guard would really be answered: each test also
checks that the fake received nothing. ``tests/net/test_guard.py`` holds the guard's address table
(private ranges, 6to4, NAT64, zone ids...); this matrix adds the spellings, names, userinfo tricks,
rebinding and redirects, each through the API as well.

Where ``127.0.0.1:<port>`` is allowed, names that resolve to it (``localhost``, its IDN spellings,
``127.0.0.1.``) are admitted, with a warning: an address rule admits any name resolving into it, as
``backend/net/guard.py`` documents. Numeric spellings are not: they are refused outright.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from backend.extensions import services
from backend.net.guard import HostGuard, HostNotAllowed
from sandbox.harness.exchange import ADDRESS, PASSWORD, ExchangeHarness
from sandbox.login import LoggedIn, login
from sandbox.tls import TestCA
from tests.net.helpers import PUBLIC

EWS = "/EWS/Exchange.asmx"
PORT = 8443  # the guard's own tests need no server listening
# Other spellings of 127.0.0.1 (the fake's address): refused even where 127.0.0.1:<port> is allowed.
LOOPBACK_SPELLINGS = {
    "ipv6 loopback": "https://[::1]:{port}" + EWS,
    "ipv4-mapped ipv6": "https://[::ffff:127.0.0.1]:{port}" + EWS,
    "ipv4-mapped ipv6, hex": "https://[::ffff:7f00:1]:{port}" + EWS,
    "decimal": "https://2130706433:{port}" + EWS,
    "octal": "https://0177.0.0.1:{port}" + EWS,
    "short": "https://127.1:{port}" + EWS,
    "hex": "https://0x7f.0.0.1:{port}" + EWS,
    "fullwidth digits": "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}" + EWS,
}
# Internal addresses and names that resolve to loopback (IDNA maps them to "localhost"): refused
# where nothing is allowed.
INTERNAL = {
    "ipv6 link-local": "https://[fe80::1]:{port}" + EWS,
    "ipv6 ULA": "https://[fd12:3456:789a::1]:{port}" + EWS,
    "cloud metadata": "https://169.254.169.254/latest/meta-data/",
    "loopback": "https://127.0.0.1:{port}" + EWS,
    "trailing dot": "https://127.0.0.1.:{port}" + EWS,
    "localhost, trailing dot": "https://localhost.:{port}" + EWS,
    "localhost, upper case": "https://LOCALHOST:{port}" + EWS,
    "idn: fullwidth localhost": "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{port}" + EWS,
    "idn: soft hyphen": "https://loca\u00adlhost:{port}" + EWS,
    "idn: circled letter": "https://\u24dbocalhost:{port}" + EWS,
}
# A user name before the host: the browser-style reading and ours must not differ (refused outright).
USERINFO = {
    "good@internal": "https://mail.example.com@127.0.0.1:{port}" + EWS,
    "good:pw@internal": "https://mail.example.com:443@127.0.0.1:{port}" + EWS,
    "internal@good": "https://127.0.0.1:{port}@mail.example.com" + EWS,
    "backslash": "https://127.0.0.1:{port}\\@mail.example.com" + EWS,
}


def _urls(table: dict[str, str], port: int) -> list[str]:
    return [url.format(port=port) for url in table.values()]


@pytest.fixture
def allow(ews: ExchangeHarness) -> str:
    """No EWS host allowed (the default); tests that allow the fake's listener say so."""
    return ""


@pytest.fixture
def app_config(app_config: dict[str, Any], ews: ExchangeHarness, allow: str) -> dict[str, Any]:
    """The fake's CA and Autodiscover URL; ``allow`` as EWS_ALLOWED_HOSTS."""
    return {**app_config, **ews.settings_overrides(), "EWS_ALLOWED_HOSTS": allow.format(port=ews.server.port),
            "EWS_TIMEOUT_SECONDS": 3, "EWS_CONNECT_DEADLINE_SECONDS": 6}


@pytest.fixture
def alice(client: FlaskClient, ca: TestCA) -> LoggedIn:
    """Alice's pane session."""
    return login(client, ca.ca_path, mailbox=ADDRESS)


def _connect(client: FlaskClient, alice: LoggedIn, ews_url: str | None) -> tuple[int, str, dict[str, Any]]:
    body = {"login": ADDRESS, "password": PASSWORD, **({"ews_url": ews_url} if ews_url is not None else {})}
    answer = client.post("/api/sync/exchange", headers=alice.headers, json=body)
    payload = answer.json or {}
    assert "error" in payload or answer.status_code == 200, answer.get_data(as_text=True)
    error = payload.get("error") or {}
    return answer.status_code, error.get("code", ""), error


def _nothing_stored(app: Flask, uid: str) -> bool:
    with app.app_context():
        mailbox = services().store.mailboxes.get(uid)
        return (mailbox is None or mailbox.provider != "exchange") and \
            services().store.secrets.get("mailbox", uid, "exchange_password") is None


# --- the guard itself ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted({**LOOPBACK_SPELLINGS, **INTERNAL, **USERINFO}))
def test_the_guard_refuses_with_nothing_allowed(name: str) -> None:
    url = {**LOOPBACK_SPELLINGS, **INTERNAL, **USERINFO}[name].format(port=PORT)
    with pytest.raises(HostNotAllowed):
        HostGuard().check(url)


@pytest.mark.parametrize("name", sorted({**LOOPBACK_SPELLINGS, **USERINFO}))
def test_the_guard_refuses_other_spellings_of_an_allowed_address(name: str) -> None:
    port = PORT
    guard = HostGuard([f"127.0.0.1:{port}"])
    guard.check(f"https://127.0.0.1:{port}{EWS}")  # the canonical spelling is the one allowed
    with pytest.raises(HostNotAllowed):
        guard.check({**LOOPBACK_SPELLINGS, **USERINFO}[name].format(port=port))


def rebinding(answers: list[list[str]], calls: list[str]) -> Callable[[str, int], list[tuple[int, tuple[Any, ...]]]]:
    """A resolver stand-in: the n-th lookup gets ``answers[n]`` (the last one from then on)."""

    def resolve(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
        calls.append(host)
        addresses = answers[min(len(calls), len(answers)) - 1]
        return [((socket.AF_INET6 if ":" in a else socket.AF_INET), (a, port)) for a in addresses]

    return resolve


@pytest.mark.parametrize("second", [["127.0.0.1"], ["::1"], ["169.254.169.254"], [PUBLIC, "10.0.0.7"]])
def test_the_guard_judges_every_answer_of_a_rebinding_name(second: list[str]) -> None:
    calls: list[str] = []
    guard = HostGuard(resolver=rebinding([[PUBLIC], second], calls))
    assert guard.check("https://rebind.example/EWS/Exchange.asmx") == [(socket.AF_INET, (PUBLIC, 443))]
    with pytest.raises(HostNotAllowed):
        guard.check("https://rebind.example/EWS/Exchange.asmx")
    assert calls == ["rebind.example", "rebind.example"]


# --- through POST /api/sync/exchange -------------------------------------------------------------------


def _refusals(client: FlaskClient, alice: LoggedIn, table: dict[str, str], port: int) -> dict[str, tuple[int, str]]:
    """Each URL of ``table`` sent to Connect in turn (one pane session: a refusal sends no password,
    so it counts no attempt): name -> (status, code)."""
    return {name: _connect(client, alice, url.format(port=port))[:2] for name, url in table.items()}


def test_connect_refuses_internal_hosts(app: Flask, client: FlaskClient, alice: LoggedIn, ews: ExchangeHarness) -> None:
    table = {**LOOPBACK_SPELLINGS, **INTERNAL}
    answers = _refusals(client, alice, table, ews.server.port)
    assert answers == dict.fromkeys(table, (400, "host_not_allowed"))
    assert ews.state.operations == [] and ews.server.recorder.calls == []
    assert _nothing_stored(app, alice.uid)


def test_connect_refuses_a_user_name_in_the_url(app: Flask, client: FlaskClient, alice: LoggedIn,
                                               ews: ExchangeHarness) -> None:
    fields = {name: _connect(client, alice, url.format(port=ews.server.port))[2].get("field")
              for name, url in USERINFO.items()}
    assert _refusals(client, alice, USERINFO, ews.server.port) == dict.fromkeys(USERINFO, (400, "invalid_input"))
    assert fields == dict.fromkeys(USERINFO, "ews_url")
    assert ews.server.recorder.calls == [] and _nothing_stored(app, alice.uid)


@pytest.mark.parametrize("allow", ["127.0.0.1:{port}"])
def test_connect_refuses_other_spellings_of_the_allowed_server(app: Flask, client: FlaskClient, alice: LoggedIn,
                                                              ews: ExchangeHarness) -> None:
    answers = _refusals(client, alice, LOOPBACK_SPELLINGS, ews.server.port)
    assert answers == dict.fromkeys(LOOPBACK_SPELLINGS, (400, "host_not_allowed"))
    assert ews.server.recorder.calls == [] and _nothing_stored(app, alice.uid)
    # The control: the same server by the spelling allowed is reached (so the refusals were the guard's).
    assert _connect(client, alice, ews.ews_url)[0] == 200


@pytest.mark.parametrize("second", [["127.0.0.1"], [PUBLIC, "127.0.0.1"]])
def test_connect_refuses_a_name_that_rebinds_to_loopback(app: Flask, client: FlaskClient, alice: LoggedIn,
                                                        ews: ExchangeHarness, second: list[str]) -> None:
    calls: list[str] = []
    with app.app_context():
        services().clients.dns_resolver = rebinding([[PUBLIC], second], calls)
    status, code, error = _connect(client, alice, f"https://rebind.example:{ews.server.port}{EWS}")
    # The first answer passed the check; the connection's own lookup got loopback and was refused.
    assert (status, code) == (400, "host_not_allowed"), error
    assert len(calls) >= 2 and ews.server.recorder.calls == [] and _nothing_stored(app, alice.uid)


REDIRECT_TARGETS = {
    "cloud metadata": "https://169.254.169.254/latest/meta-data/",
    "decimal loopback": "https://2130706433:{port}/autodiscover/autodiscover.xml",
    "ipv4-mapped loopback": "https://[::ffff:127.0.0.1]:{port}/autodiscover/autodiscover.xml",
    "localhost": "https://localhost:{port}/autodiscover/autodiscover.xml",
    "private": "https://10.1.2.3/autodiscover/autodiscover.xml",
    "plain http": "http://127.0.0.1:{port}/autodiscover/autodiscover.xml",
}


@pytest.mark.parametrize("allow", ["127.0.0.1:{port}"])
def test_autodiscover_redirects_to_internal_hosts_are_refused(app: Flask, client: FlaskClient, alice: LoggedIn,
                                                              ews: ExchangeHarness, redis_client: redis.Redis) -> None:
    answers, operations = {}, {}
    for name, target in REDIRECT_TARGETS.items():
        # Autodiscover signs in (NTLM) to the allowed fake before its redirect: a counted attempt each.
        for key in redis_client.scan_iter("sstest:ratelimit:*"):
            redis_client.delete(key)
        ews.state.autodiscover_http_redirect = target.format(port=ews.server.port)
        ews.state.operations.clear()
        answers[name] = _connect(client, alice, None)[:2]
        operations[name] = list(ews.state.operations)
    # Refused by the guard, or (another host than the one asked, though allowed by its address) not
    # followed at all: Autodiscover then has no answer, and the person is asked for the EWS URL.
    assert answers == {**dict.fromkeys(REDIRECT_TARGETS, (400, "host_not_allowed")),
                       "localhost": (502, "ews_unreachable")}
    # The one Autodiscover request that answered with the redirect, and nothing after it.
    assert operations == {name: ["Autodiscover"] for name in REDIRECT_TARGETS} and _nothing_stored(app, alice.uid)


@pytest.mark.parametrize("allow", ["127.0.0.1:{port}"])
def test_an_ews_url_autodiscover_names_in_another_spelling_is_refused(
        app: Flask, client: FlaskClient, alice: LoggedIn, ews: ExchangeHarness) -> None:
    first, confirmed = {}, {}
    for name in ("decimal", "ipv4-mapped ipv6", "short", "ipv6 loopback"):
        named = LOOPBACK_SPELLINGS[name].format(port=ews.server.port)
        ews.state.ews_url = named
        first[name] = _connect(client, alice, None)[:2]
        # Confirming the host the answer named (sending it back as ews_url) is still refused by the guard.
        confirmed[name] = _connect(client, alice, named)[:2]
    assert all(answer in ((400, "host_not_allowed"), (409, "ews_host_unconfirmed")) for answer in first.values()), first
    assert confirmed == dict.fromkeys(first, (400, "host_not_allowed"))
    assert set(ews.state.operations) == {"Autodiscover"} and _nothing_stored(app, alice.uid)
