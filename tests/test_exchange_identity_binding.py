"""Issue 18, item 8: the Exchange identity binding is per issuing host; listed hosts vouch only for their domains."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from backend.config import ConfigError, Settings
from backend.security.exchange_identity import ExchangeIdentityVerifier
from backend.security.identity import ProofInvalid
from sandbox.harness.exchange import ADDRESS, ExchangeHarness
from sandbox.https_client import PUBLIC_BASE_URL
from sandbox.login import login
from sandbox.tls import TestCA

PANE = f"{PUBLIC_BASE_URL}/taskpane.html"
UID = "53e925fa-76ba-45e1-be0f-4ef08b59d389"


def _hosts(ews: ExchangeHarness) -> str:
    port = ews.server.port
    return f"127.0.0.1:{port}=acme.example,localhost:{port}=acme.example"


@pytest.fixture
def app_config(app_config: dict[str, Any], ews: ExchangeHarness) -> dict[str, Any]:
    """Proofs required; the fake trusted as an issuer for acme.example under two names."""
    return {**app_config, **ews.settings_overrides(), "REQUIRE_MAILBOX_PROOF": "on",
            "EXCHANGE_IDENTITY_HOSTS": _hosts(ews)}


def _verifier(ews: ExchangeHarness) -> ExchangeIdentityVerifier:
    return ExchangeIdentityVerifier(Settings.load({
        "SIDEBAR_ENV": "development", "PUBLIC_BASE_URL": PUBLIC_BASE_URL, **ews.settings_overrides(),
        "EXCHANGE_IDENTITY_HOSTS": _hosts(ews)}))


def test_a_listed_host_vouches_only_for_its_domains(ews: ExchangeHarness) -> None:
    verifier = _verifier(ews)
    assert verifier.verify(ews.state.identity_token(PANE), ADDRESS).kind == "exchange"
    with pytest.raises(ProofInvalid, match="outside this mailbox's organisation"):
        verifier.verify(ews.state.identity_token(PANE), "mallory@other.example")


def test_the_identity_names_the_issuing_host(ews: ExchangeHarness) -> None:
    verified = _verifier(ews).verify(ews.state.identity_token(PANE), ADDRESS)
    assert verified.identity == f"exchange:127.0.0.1:{ews.server.port}/{UID}"


def test_the_same_msexchuid_from_another_host_proves_nothing(client: FlaskClient, ca: TestCA,
                                                             ews: ExchangeHarness) -> None:
    who = login(client, ca.ca_path, mailbox=ADDRESS, proof=ews.state.identity_token(PANE))
    resp = client.post("/api/sync/exchange", json={"login": ADDRESS, "password": ews.password,
                                                   "ews_url": ews.ews_url}, headers=who.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    again = login(client, ca.ca_path, mailbox=ADDRESS, proof=ews.state.identity_token(PANE))
    assert client.get("/api/me", headers=again.headers).json["mailbox"]["verified"] is True
    # Another server (here: another name) issuing a token with Alice's msexchuid: not Alice.
    other = f"https://localhost:{ews.server.port}/autodiscover/metadata/json/1"
    forged = login(client, ca.ca_path, mailbox=ADDRESS, proof=ews.state.identity_token(PANE, amurl=other))
    assert client.get("/api/me", headers=forged.headers).json["mailbox"]["verified"] is False


@pytest.mark.parametrize("value", ["mail.acme.example", "mail.acme.example=", "mail.acme.example=not a domain"])
def test_every_listed_issuer_names_its_domains(value: str) -> None:
    with pytest.raises(ConfigError, match="EXCHANGE_IDENTITY_HOSTS"):
        Settings.load({"SIDEBAR_ENV": "development", "EXCHANGE_IDENTITY_HOSTS": value})
