"""Issue 18, item 2: where Autodiscover sends the password (a private hosts map points test names at loopback)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from backend.config import Settings
from backend.connectors import exchange as ex
from backend.errors import SetupFailed
from sandbox.harness.exchange import ExchangeHarness
from sandbox.tls import TestCA

NAMES = ("ewsbare.example", "autodiscover.ewsout.example", "evil.example", "autodiscover.ewsv2.example")
ERIN, DAVE, VERA = "erin@ewsbare.example", "dave@ewsout.example", "vera@ewsv2.example"


@pytest.fixture
def fake(ca: TestCA) -> Iterator[ExchangeHarness]:
    """One fake Exchange answering under every name above (only the names in NAMES resolve)."""
    h = ExchangeHarness(ca.ca_path, ca.issue("ews-attacks", hosts=(*NAMES, "127.0.0.1", "localhost")))
    h.state.add_user(ERIN, "erin-pw", account="erin", display_name="Erin")
    h.state.add_user(DAVE, "dave-pw", account="dave", display_name="Dave")
    h.state.add_user(VERA, "vera-pw", account="vera", display_name="Vera")
    yield h
    h.close()


def _resolver(host: str, port: int) -> list[Any]:
    if host in NAMES:
        return [(socket.AF_INET, ("127.0.0.1", port))]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def _settings(h: ExchangeHarness) -> Settings:
    port = h.server.port
    urls = (f"https://autodiscover.{{domain}}:{port}/autodiscover/autodiscover.xml,"
            f"https://{{domain}}:{port}/autodiscover/autodiscover.xml")
    # Loopback *addresses* are allowed (so the names can be reached), no name is.
    return Settings.load({"SIDEBAR_ENV": "development", **h.settings_overrides(), "EWS_ALLOWED_HOSTS": "127.0.0.1",
                          "EWS_AUTODISCOVER_URLS": urls})


def _calls_to(h: ExchangeHarness, name: str) -> list[Any]:
    return [c for c in h.server.recorder.calls if c.headers.get("Host", "").split(":")[0] == name]


def _credentials(calls: list[Any]) -> list[str]:
    return [c.headers["Authorization"] for c in calls if "Authorization" in c.headers]


def test_autodiscover_never_falls_back_to_basic(fake: ExchangeHarness) -> None:
    # erin@ewsbare.example: no autodiscover. host; the bare domain answers a Basic challenge.
    fake.state.auth_methods = ("Basic",)
    with pytest.raises(SetupFailed) as caught:
        ex.connect(_settings(fake), ERIN, "erin-pw", resolver=_resolver)
    assert caught.value.code == "ews_unreachable" and "EWS URL" in caught.value.message
    assert _calls_to(fake, "ewsbare.example")  # it was asked...
    assert _credentials(fake.server.recorder.calls) == []  # ...but never given the password


def test_an_ews_url_outside_the_login_domain_is_shown_not_contacted(fake: ExchangeHarness) -> None:
    # dave@ewsout.example: the in-domain Autodiscover names a host of another domain.
    evil = f"https://evil.example:{fake.server.port}/EWS/Exchange.asmx"
    fake.state.ews_url = evil
    with pytest.raises(SetupFailed) as caught:
        ex.connect(_settings(fake), DAVE, "dave-pw", resolver=_resolver)
    assert caught.value.code == "ews_host_unconfirmed"
    assert isinstance(caught.value, ex.HostUnconfirmed) and caught.value.ews_url == evil
    assert "evil.example" in caught.value.message
    assert _calls_to(fake, "evil.example") == []  # no handshake, not even the unauthenticated probe
    # The person confirms the host by entering it: then it is their choice, and it works.
    result = ex.connect(_settings(fake), DAVE, "dave-pw", evil, resolver=_resolver)
    assert result.ews_url == evil and not result.autodiscovered


def test_discovery_without_credentials_comes_first(fake: ExchangeHarness) -> None:
    # The server speaks Autodiscover v2 (anonymous JSON): the URL is learnt without any credentials.
    fake.state.autodiscover_v2 = True
    result = ex.connect(_settings(fake), VERA, "vera-pw", resolver=_resolver)
    assert result.autodiscovered and result.ews_url == fake.ews_url
    assert "Autodiscover" not in fake.state.operations and "AutodiscoverV2" in fake.state.operations
    assert _credentials(_calls_to(fake, "autodiscover.ewsv2.example")) == []
