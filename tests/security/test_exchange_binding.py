"""An Exchange identity token is bound to addresses only by a server that speaks for its issuer.

Review 4, finding 1: with Bob's genuine token (issued by acme's server), Mallory claimed
alice@acme.example and connected a rogue EWS server of her own that said "this is Alice"; the
token then proved Alice's address. Only the token's issuer, a host under the mailbox's domain or one
listed in EXCHANGE_IDENTITY_HOSTS for it (the token's own issuer rule) may bind it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.extensions import services
from backend.security.exchange_identity import IssuerHosts, identity_issuer, server_speaks_for
from sandbox.harness.exchange import ADDRESS, ExchangeHarness
from sandbox.https_client import PUBLIC_BASE_URL
from sandbox.login import login
from sandbox.tls import CertPair, TestCA

PANE = f"{PUBLIC_BASE_URL}/taskpane.html"
BOB_UID = "0b0b0b0b-76ba-45e1-be0f-4ef08b59d389"


@pytest.fixture
def rogue(ca: TestCA, server_cert: CertPair) -> Iterator[ExchangeHarness]:
    """Mallory's own EWS server: it has an alice@acme.example whose password Mallory set."""
    harness = ExchangeHarness(ca.ca_path, server_cert)
    yield harness
    harness.close()


@pytest.fixture
def app_config(app_config: dict[str, Any], ews: ExchangeHarness, rogue: ExchangeHarness,
               fake_salesforce: Any) -> dict[str, Any]:
    """Proofs required; acme's real server listed as acme.example's issuer; the rogue server reachable."""
    fake_salesforce.state.add_user("mallory@acme.example", "mallory-pw", email="mallory@acme.example",
                                   name="Mallory")
    return {**app_config, **ews.settings_overrides(), "REQUIRE_MAILBOX_PROOF": "on",
            "EWS_ALLOWED_HOSTS": f"127.0.0.1:{ews.server.port},127.0.0.1:{rogue.server.port}",
            "EXCHANGE_IDENTITY_HOSTS": f"127.0.0.1:{ews.server.port}=acme.example"}


def _mallory(client: FlaskClient, ca: TestCA, ews: ExchangeHarness) -> Any:
    return login(client, ca.ca_path, mailbox=ADDRESS, proof=ews.state.identity_token(PANE, msexchuid=BOB_UID),
                 username="mallory@acme.example", password="mallory-pw")


def test_a_chosen_ews_server_cannot_vouch_for_another_servers_identity(
        app: Flask, client: FlaskClient, ca: TestCA, ews: ExchangeHarness, rogue: ExchangeHarness) -> None:
    who = _mallory(client, ca, ews)
    assert client.get("/api/me", headers=who.headers).json["mailbox"]["verified"] is False
    resp = client.post("/api/sync/exchange", headers=who.headers,
                       json={"login": ADDRESS, "password": rogue.password, "ews_url": rogue.ews_url})
    assert resp.status_code == 200, resp.get_data(as_text=True)  # the connection itself stands
    with app.app_context():
        store = services().store
        user = store.users.get(who.uid)
        identity = f"exchange:127.0.0.1:{ews.server.port}/{BOB_UID}"
        assert store.exchange_ids.addresses(identity) == frozenset()
        # Unverified, so _is_own_login does not exempt her from the per-login ceiling on Alice's login.
        assert user is not None and user.addin_mailbox_verified is False
    again = _mallory(client, ca, ews)
    me = client.get("/api/me", headers=again.headers).json["mailbox"]
    assert me["verified"] is False, f"Bob's token now proves {ADDRESS}: {me}"


def test_the_issuers_own_server_still_binds(client: FlaskClient, ca: TestCA, ews: ExchangeHarness) -> None:
    who = login(client, ca.ca_path, mailbox=ADDRESS, proof=ews.state.identity_token(PANE))
    resp = client.post("/api/sync/exchange", headers=who.headers,
                       json={"login": ADDRESS, "password": ews.password, "ews_url": ews.ews_url})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    again = login(client, ca.ca_path, mailbox=ADDRESS, proof=ews.state.identity_token(PANE))
    assert client.get("/api/me", headers=again.headers).json["mailbox"]["verified"] is True


def test_which_servers_speak_for_an_identity() -> None:
    issuers = IssuerHosts(["ews.partner.example:8443=acme.example"])
    identity = "exchange:mail.acme.example:443/uid-1"
    assert identity_issuer(identity) == ("mail.acme.example", 443)
    assert identity_issuer("exchange:::1:8443/uid") == ("::1", 8443)
    assert identity_issuer("naa:tenant/oid") is None
    speaks = [url for url in ["https://mail.acme.example/EWS/Exchange.asmx",  # the issuer
                              "https://owa.acme.example/EWS/Exchange.asmx",  # under the domain
                              "https://ews.partner.example:8443/EWS/Exchange.asmx",  # listed for it
                              "https://ews.partner.example/EWS/Exchange.asmx",  # listed, not this port
                              "https://mail.acme.example:444/EWS/Exchange.asmx",  # under the domain too
                              "https://evil.example/EWS/Exchange.asmx",
                              "https://acme.example.evil.example/EWS/Exchange.asmx",
                              "http://mail.acme.example/EWS/Exchange.asmx",
                              "https://[::1/EWS"]
              if server_speaks_for(issuers, identity, url, "alice@acme.example")]
    assert speaks == ["https://mail.acme.example/EWS/Exchange.asmx", "https://owa.acme.example/EWS/Exchange.asmx",
                      "https://ews.partner.example:8443/EWS/Exchange.asmx",
                      "https://mail.acme.example:444/EWS/Exchange.asmx"]
    # An issuer outside the domain speaks for its identity on its own port only.
    partner = "exchange:ews.partner.example:9443/uid-2"
    assert server_speaks_for(issuers, partner, "https://ews.partner.example:9443/EWS", "alice@acme.example")
    assert not server_speaks_for(IssuerHosts([]), partner, "https://ews.partner.example:9444/EWS",
                                 "alice@acme.example")
    # A listed host speaks only for its domains, even for an identity it issued elsewhere.
    assert not server_speaks_for(issuers, identity, "https://ews.partner.example:8443/", "bob@other.example")
