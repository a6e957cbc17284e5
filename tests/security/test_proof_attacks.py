"""Issue 18, item 5: a spent one-time code must not make the server fetch what a proof names."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from sandbox.harness.exchange import ADDRESS, ExchangeHarness
from sandbox.https_client import PUBLIC_BASE_URL
from sandbox.login import PANE_VERIFIER, salesforce_dialog_code
from sandbox.tls import TestCA

PANE = f"{PUBLIC_BASE_URL}/taskpane.html"


@pytest.fixture
def app_config(app_config: dict[str, Any], ews: ExchangeHarness) -> dict[str, Any]:
    """Proofs required; the fake's host trusted as an Exchange identity issuer for acme.example."""
    return {**app_config, **ews.settings_overrides(), "REQUIRE_MAILBOX_PROOF": "on",
            "EXCHANGE_IDENTITY_HOSTS": f"127.0.0.1:{ews.server.port}=acme.example"}


def _metadata_fetches(ews: ExchangeHarness) -> int:
    return ews.state.operations.count("Metadata")


def test_a_spent_code_fetches_nothing(client: FlaskClient, ca: TestCA, ews: ExchangeHarness) -> None:
    code = salesforce_dialog_code(client, ca.ca_path)
    first = client.post("/api/session", json={"code": code, "verifier": PANE_VERIFIER,
                                              "mailbox": ADDRESS,
                                               "mailbox_proof": ews.state.identity_token(PANE)})
    assert first.status_code == 201, first.get_data(as_text=True)
    before = _metadata_fetches(ews)
    for n in range(5):
        amurl = f"{ews.server.url}/autodiscover/metadata/json/1?forged={n}"
        resp = client.post("/api/session", json={"code": code, "verifier": PANE_VERIFIER,
                                              "mailbox": ADDRESS,
                                                  "mailbox_proof": ews.state.identity_token(PANE, amurl=amurl)})
        assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_code"
    assert _metadata_fetches(ews) == before  # no outbound GET for a spent code


def test_proof_checks_are_rate_limited(client: FlaskClient, ca: TestCA, ews: ExchangeHarness,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.api import session

    monkeypatch.setattr(session, "PROOF_CHECKS_PER_USER", 2)
    for n in range(2):
        code = salesforce_dialog_code(client, ca.ca_path)
        amurl = f"{ews.server.url}/autodiscover/metadata/json/1?try={n}"
        resp = client.post("/api/session", json={"code": code, "verifier": PANE_VERIFIER,
                                              "mailbox": ADDRESS,
                                                  "mailbox_proof": ews.state.identity_token(PANE, amurl=amurl)})
        assert resp.status_code == 201, resp.get_data(as_text=True)
    before = _metadata_fetches(ews)
    code = salesforce_dialog_code(client, ca.ca_path)
    resp = client.post("/api/session", json={"code": code, "verifier": PANE_VERIFIER,
                                              "mailbox": ADDRESS,
                                              "mailbox_proof": ews.state.identity_token(PANE, amurl=f"{ews.server.url}"
                                                                                        "/autodiscover/metadata/json/1?x")})
    assert resp.status_code == 429 and resp.json["error"]["code"] == "rate_limited"
    assert _metadata_fetches(ews) == before
    # The code was not spent by the refusal.
    assert client.post("/api/session", json={"code": code, "verifier": PANE_VERIFIER,
                                              "mailbox": ADDRESS}).status_code == 401  # proof required
