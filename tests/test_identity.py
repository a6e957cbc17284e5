"""Nested App Authentication tokens: signature (JWKS), issuer, audience, expiry, scope, tenant, mailbox."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from sandbox.login import PANE_VERIFIER, login, salesforce_dialog_code
from sandbox.microsoft import new_key
from sandbox.tls import TestCA
from tests.conftest import RunningFake

ALICE = "alice@acme.example"


def _session(client: FlaskClient, ca: TestCA, proof: str, mailbox: str = ALICE) -> Any:
    code = salesforce_dialog_code(client, ca.ca_path)
    return client.post("/api/session", json={"code": code, "verifier": PANE_VERIFIER,
                                              "mailbox": mailbox, "mailbox_proof": proof})


def test_valid_token_verifies_the_mailbox(client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake) -> None:
    who = login(client, ca.ca_path, proof=fake_microsoft.state.naa_token(ALICE, tid="tenant-contoso"))
    me = client.get("/api/me", headers=who.headers).json
    assert me is not None and me["mailbox"] == {"address": ALICE, "verified": True, "proof": "naa"}


def test_address_case_does_not_matter(client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake) -> None:
    resp = _session(client, ca, fake_microsoft.state.naa_token("Alice@ACME.example"), mailbox="ALICE@acme.example")
    assert resp.status_code == 201


def _bad_tokens(ms: Any) -> dict[str, tuple[str, str]]:
    now = int(time.time())
    stranger = new_key("unpublished")
    return {
        "wrong audience": (ms.naa_token(ALICE, audience="api://someone-else/123"), "mailbox_proof_invalid"),
        "wrong issuer": (ms.naa_token(ALICE, iss="https://evil.example/tenant-contoso/v2.0"), "mailbox_proof_invalid"),
        "issuer of another tenant": (ms.naa_token(ALICE, tid="tenant-a", iss=ms.issuer("tenant-b")),
                                     "mailbox_proof_invalid"),
        "expired": (ms.naa_token(ALICE, exp=now - 3600, iat=now - 7200, nbf=now - 7200), "mailbox_proof_invalid"),
        "not yet valid": (ms.naa_token(ALICE, nbf=now + 3600), "mailbox_proof_invalid"),
        "unknown signing key": (ms.mint({"aud": ms.client_id, "iss": ms.issuer("t"), "tid": "t", "exp": now + 600,
                                         "scp": "access_as_user", "preferred_username": ALICE}, key=stranger),
                                "mailbox_proof_invalid"),
        "forged signature": (ms.naa_token(ALICE)[:-6] + "AAAAAA", "mailbox_proof_invalid"),
        "missing scope": (ms.naa_token(ALICE, scp="User.Read"), "mailbox_proof_invalid"),
        "another mailbox": (ms.naa_token("mallory@acme.example"), "mailbox_mismatch"),
        "not a jwt": ("definitely-not-a-jwt", "mailbox_proof_invalid"),
        "header nested too deep": (_b64("[" * 5000) + "." + _b64("{}") + ".sig", "mailbox_proof_invalid"),
    }


def _b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "case",
    ["wrong audience", "wrong issuer", "issuer of another tenant", "expired", "not yet valid",
     "unknown signing key", "forged signature", "missing scope", "another mailbox", "not a jwt",
     "header nested too deep"],
)
def test_bad_tokens_are_rejected(client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake, case: str) -> None:
    token, code = _bad_tokens(fake_microsoft.state)[case]
    resp = _session(client, ca, token)
    assert resp.status_code == 401, resp.get_data(as_text=True)
    assert resp.json is not None and resp.json["error"]["code"] == code


def test_alg_none_is_rejected(client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake) -> None:
    import jwt

    token = jwt.encode({"aud": fake_microsoft.state.client_id, "tid": "t", "preferred_username": ALICE,
                        "exp": int(time.time()) + 600}, key=None, algorithm="none")  # type: ignore[arg-type]
    resp = _session(client, ca, token)
    assert resp.status_code == 401


def test_tenants_can_be_restricted(
    app_config: dict[str, Any], redis_client: Any, ca: TestCA, fake_microsoft: RunningFake
) -> None:
    from backend import create_app
    from sandbox.https_client import HttpsClient

    application = create_app({**app_config, "MS_ALLOWED_TENANTS": "tenant-contoso"})
    application.test_client_class = HttpsClient
    client = application.test_client()
    assert _session(client, ca, fake_microsoft.state.naa_token(ALICE, tid="tenant-contoso")).status_code == 201
    resp = _session(client, ca, fake_microsoft.state.naa_token(ALICE, tid="tenant-fabrikam"))
    assert resp.status_code == 401 and resp.json["error"]["code"] == "tenant_not_allowed"  # type: ignore[index]


def test_keys_are_fetched_once_and_refetched_for_a_new_key(
    client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake
) -> None:
    ms = fake_microsoft.state
    assert _session(client, ca, ms.naa_token(ALICE)).status_code == 201
    assert _session(client, ca, ms.naa_token(ALICE)).status_code == 201
    assert len(fake_microsoft.calls.matching("GET", "/organizations/discovery/v2.0/keys")) == 1


def test_the_email_claim_is_not_proof_of_a_mailbox(
    client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake
) -> None:
    """Tenant admins can set "email" to anything: only the directory's sign-in names count."""
    import jwt

    ms = fake_microsoft.state
    claims = jwt.decode(ms.naa_token("mallory@evil.example"), options={"verify_signature": False})
    token = ms.mint({**claims, "email": ALICE, "unique_name": ALICE})
    resp = _session(client, ca, token)
    assert resp.status_code == 401 and resp.json["error"]["code"] == "mailbox_mismatch"  # type: ignore[index]


def test_a_forged_code_never_triggers_a_proof_check(
    client: FlaskClient, fake_microsoft: RunningFake
) -> None:
    resp = client.post("/api/session", json={"code": "forged", "mailbox": ALICE,
                                             "mailbox_proof": fake_microsoft.state.naa_token(ALICE)})
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_code"  # type: ignore[index]
    assert fake_microsoft.calls.matching("GET") == []  # no keys fetched for an anonymous caller


def test_malformed_signing_keys_are_a_clear_error(client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake) -> None:
    class Junk:
        kid = "junk"

        def jwk(self) -> dict[str, Any]:
            return {"kty": "RSA", "kid": "junk", "n": "!!", "e": 5}

    good = fake_microsoft.state.naa_token(ALICE)
    fake_microsoft.state.keys = [Junk()]
    resp = _session(client, ca, good)
    assert resp.status_code == 503 and resp.json["error"]["code"] == "identity_unavailable"  # type: ignore[index]
