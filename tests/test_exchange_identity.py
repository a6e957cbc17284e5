"""Exchange identity tokens (on-premises add-in proof) through ``POST /api/session``, against the fake Exchange."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.config import Settings
from backend.security import exchange_identity
from backend.security.exchange_identity import ExchangeIdentityVerifier
from backend.security.identity import ProofInvalid
from sandbox.ews import EXCHANGE_PRINCIPAL, METADATA_PATH, new_signing_key, x5t_of
from sandbox.harness.exchange import ADDRESS, ExchangeHarness
from sandbox.https_client import PUBLIC_BASE_URL
from sandbox.login import PANE_VERIFIER, login, salesforce_dialog_code
from sandbox.tls import TestCA

PANE = f"{PUBLIC_BASE_URL}/taskpane.html"


@pytest.fixture
def app_config(app_config: dict[str, Any], ews: ExchangeHarness) -> dict[str, Any]:
    """Proofs required; the fake's host trusted as an Exchange identity issuer and allowed outbound."""
    return {**app_config, **ews.settings_overrides(), "REQUIRE_MAILBOX_PROOF": "on",
            "EXCHANGE_IDENTITY_HOSTS": f"127.0.0.1:{ews.server.port}=acme.example,169.254.169.254=acme.example,"
                                       "10.0.0.9=acme.example"}


def _session(client: FlaskClient, ca: TestCA, proof: str, mailbox: str = ADDRESS) -> Any:
    code = salesforce_dialog_code(client, ca.ca_path)
    return client.post("/api/session", json={"code": code, "verifier": PANE_VERIFIER,
                                              "mailbox": mailbox, "mailbox_proof": proof})


def _mailbox_of(client: FlaskClient, who: Any) -> dict[str, Any]:
    me = client.get("/api/me", headers=who.headers).json
    assert me is not None
    return dict(me["mailbox"])


def test_a_valid_token_proves_the_mailbox_once_its_user_connected_it(client: FlaskClient, ca: TestCA,
                                                                      ews: ExchangeHarness) -> None:
    # The token proves an Exchange user of acme.example, and names no address: the login stands,
    # the mailbox is not verified yet.
    who = login(client, ca.ca_path, mailbox=ADDRESS, proof=ews.state.identity_token(PANE))
    assert _mailbox_of(client, who) == {"address": ADDRESS, "verified": False, "proof": "exchange"}
    assert ews.state.operations == ["Metadata"]

    # Connecting the mailbox with its password ties that Exchange user to the address.
    resp = client.post("/api/sync/exchange", json={"login": ADDRESS, "password": ews.password,
                                                   "ews_url": ews.ews_url}, headers=who.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert _mailbox_of(client, who)["verified"] is True

    # From then on the same user's token proves the mailbox at the next login...
    again = login(client, ca.ca_path, mailbox=ADDRESS, proof=ews.state.identity_token(PANE))
    assert _mailbox_of(client, again) == {"address": ADDRESS, "verified": True, "proof": "exchange"}
    # ...and a colleague's genuine token claiming this address does not.
    colleague = login(client, ca.ca_path, mailbox=ADDRESS,
                      proof=ews.state.identity_token(PANE, msexchuid="0b7c1d2e-colleague"))
    assert _mailbox_of(client, colleague)["verified"] is False


def test_the_identity_and_the_metadata_cache(app: Flask, ews: ExchangeHarness) -> None:
    with app.app_context():
        from backend.extensions import services
        from backend.security.proofs import verify

        clients = services().clients
        kw = {"naa": clients.naa_verifier, "exchange": clients.exchange_verifier,
              "proven_addresses": services().store.exchange_ids.addresses}
        first = verify(ews.state.identity_token(PANE, msexchuid="uid-1@exch01"), ADDRESS, **kw)
        second = verify(ews.state.identity_token(f"{PANE}?v=2", msexchuid="uid-1@exch01"), ADDRESS, **kw)
    assert first.identity == second.identity == f"exchange:127.0.0.1:{ews.server.port}/uid-1@exch01"
    assert first.kind == "exchange" and first.tenant_id == "127.0.0.1" and first.address == ADDRESS
    assert ews.state.operations == ["Metadata"]  # fetched once, then cached


def _bad_tokens(ews: ExchangeHarness) -> dict[str, tuple[str, str]]:
    state = ews.state
    now = int(time.time())
    stranger = new_signing_key("Someone else")
    _, real_der = state.signing_key()
    port = ews.server.port
    appctx = {"msexchuid": "x@exch01", "version": "ExIdTok.V1", "amurl": state.amurl}
    return {
        "wrong audience": (state.identity_token("https://evil.example/taskpane.html"), "mailbox_proof_invalid"),
        "audience on another port": (state.identity_token("https://localhost:3001/taskpane.html"),
                                     "mailbox_proof_invalid"),
        "audience over http": (state.identity_token("http://localhost:3000/taskpane.html"), "mailbox_proof_invalid"),
        "expired": (state.identity_token(PANE, nbf_offset=-9 * 3600, lifetime=8 * 3600), "mailbox_proof_invalid"),
        "not yet valid": (state.identity_token(PANE, nbf_offset=3600), "mailbox_proof_invalid"),
        "implausible lifetime": (state.identity_token(PANE, lifetime=30 * 24 * 3600), "mailbox_proof_invalid"),
        "no lifetime": (jwt.encode({"aud": PANE, "appctx": json.dumps(appctx)}, state.signing_key()[0],
                                   algorithm="RS256", headers={"x5t": x5t_of(real_der)}), "mailbox_proof_invalid"),
        # Signed by another key but naming the real key's thumbprint.
        "bad signature": (state.identity_token(PANE, signer=(stranger[0], real_der)), "mailbox_proof_invalid"),
        "tampered payload": (_tamper(state.identity_token(PANE)), "mailbox_proof_invalid"),
        "unknown signing key": (state.identity_token(PANE, signer=stranger), "mailbox_proof_invalid"),
        "wrong version": (state.identity_token(PANE, version="ExIdTok.V2"), "mailbox_proof_invalid"),
        "no msexchuid": (state.identity_token(PANE, msexchuid=""), "mailbox_proof_invalid"),
        "amurl over http": (state.identity_token(PANE, amurl=f"http://127.0.0.1:{port}/autodiscover/metadata/json/1"),
                            "mailbox_proof_invalid"),
        "amurl outside the organisation": (state.identity_token(PANE, amurl="https://keys.evil.example/metadata"),
                                           "mailbox_proof_invalid"),
        "amurl on the cloud metadata address": (
            state.identity_token(PANE, amurl="https://169.254.169.254/latest/meta-data/"), "mailbox_proof_invalid"),
        "amurl on a private address": (state.identity_token(PANE, amurl="https://10.0.0.9/metadata/json/1"),
                                       "mailbox_proof_invalid"),
        "application context nested too deep": (
            jwt.encode({"aud": PANE, "appctx": "[" * 5000, "nbf": str(now), "exp": str(now + 600)},
                       state.signing_key()[0], algorithm="RS256", headers={"x5t": x5t_of(real_der)}),
            "mailbox_proof_invalid"),
        "symmetric algorithm": (jwt.encode({"aud": PANE, "appctx": json.dumps(appctx), "nbf": str(now),
                                            "exp": str(now + 600)}, "secret-key-for-hs256-tests-only-32b",
                                           algorithm="HS256", headers={"x5t": x5t_of(real_der)}),
                                "mailbox_proof_invalid"),
    }


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["appctx"] = claims["appctx"].replace("53e925fa", "00000000")
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{forged}.{signature}"


BAD_CASES = ["wrong audience", "audience on another port", "audience over http", "expired", "not yet valid",
             "implausible lifetime", "no lifetime", "bad signature", "tampered payload", "unknown signing key",
             "wrong version", "no msexchuid", "amurl over http", "amurl outside the organisation",
             "amurl on the cloud metadata address", "amurl on a private address", "symmetric algorithm",
             "application context nested too deep"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_tokens_are_rejected(client: FlaskClient, ca: TestCA, ews: ExchangeHarness, case: str) -> None:
    token, code = _bad_tokens(ews)[case]
    resp = _session(client, ca, token)
    assert resp.status_code == 401, resp.get_data(as_text=True)
    assert resp.json["error"]["code"] == code
    assert "Traceback" not in resp.get_data(as_text=True)
    if case.startswith("amurl") or case in ("wrong audience", "expired", "wrong version"):
        assert "Metadata" not in ews.state.operations  # refused before any outbound request


def test_an_unreachable_metadata_server_is_a_temporary_failure(client: FlaskClient, ca: TestCA,
                                                               ews: ExchangeHarness) -> None:
    token = ews.state.identity_token(PANE)
    ews.inject_failure("500", times=2)
    resp = _session(client, ca, token)
    assert resp.status_code == 503 and resp.json["error"]["code"] == "identity_unavailable"


def test_exchange_principal_constant_matches_the_documented_one() -> None:
    assert EXCHANGE_PRINCIPAL == "00000002-0000-0ff1-ce00-000000000000"


# ---- the metadata fetch: bounded, cached, and never a server error -------------------------------------
def _verifier(ews: ExchangeHarness, **overrides: Any) -> ExchangeIdentityVerifier:
    settings = Settings.load({"SIDEBAR_ENV": "development", "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
                              **ews.settings_overrides(), "OUTBOUND_TIMEOUT_SECONDS": 2,
                              "EXCHANGE_IDENTITY_HOSTS": f"127.0.0.1:{ews.server.port}=acme.example", **overrides})
    return ExchangeIdentityVerifier(settings)


def _metadata_gets(ews: ExchangeHarness) -> int:
    return len(ews.server.recorder.matching("GET", METADATA_PATH))


def test_a_dripping_metadata_server_is_cut_at_the_deadline(ews: ExchangeHarness) -> None:
    verifier = _verifier(ews)
    assert verifier.deadline_seconds == 2  # min(METADATA_DEADLINE_SECONDS, OUTBOUND_TIMEOUT_SECONDS)
    ews.inject_failure("drip", retry_after=0.5)  # a byte every 0.5 s: never idle for the 2 s read timeout
    token = ews.state.identity_token(PANE)
    started = time.monotonic()
    with pytest.raises(ProofInvalid) as caught:
        verifier.verify(token, ADDRESS)
    assert caught.value.code == "identity_unavailable" and "in time" in str(caught.value)
    assert time.monotonic() - started < 2 + 1.2
    # The failure is remembered for a while: the next token naming that amurl costs no request.
    started = time.monotonic()
    with pytest.raises(ProofInvalid):
        verifier.verify(ews.state.identity_token(PANE), ADDRESS)
    assert time.monotonic() - started < 0.5
    assert _metadata_gets(ews) == 1 and verifier.fetches == 1


def test_a_failure_is_remembered_only_briefly(ews: ExchangeHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = _verifier(ews)
    ews.inject_failure("500")
    with pytest.raises(ProofInvalid):
        verifier.verify(ews.state.identity_token(PANE), ADDRESS)
    later = time.time() + exchange_identity.METADATA_FAILURE_CACHE_SECONDS + 1
    monkeypatch.setattr(exchange_identity.time, "time", lambda: later)
    assert verifier.verify(ews.state.identity_token(PANE), ADDRESS).kind == "exchange"
    assert verifier.fetches == 2


def test_concurrent_tokens_share_one_metadata_fetch(ews: ExchangeHarness) -> None:
    verifier = _verifier(ews)
    ews.inject_failure("delay", retry_after=0.5)  # the one fetch takes a while; the others wait for it
    tokens = [ews.state.identity_token(PANE, msexchuid=f"u{n}@exch01") for n in range(6)]
    results: list[Any] = []

    def check(token: str) -> None:
        try:
            results.append(verifier.verify(token, ADDRESS).identity)
        except ProofInvalid as exc:  # pragma: no cover - reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=check, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == sorted(f"exchange:127.0.0.1:{ews.server.port}/u{n}@exch01" for n in range(6))
    assert _metadata_gets(ews) == 1 and verifier.fetches == 1


def _malformed() -> dict[str, bytes]:
    cert = base64.b64encode(new_signing_key("x")[1]).decode()
    return {
        "keyinfo is a string": json.dumps({"keys": [{"usage": "signing", "keyinfo": "x5t", "keyvalue": {
            "type": "x509Certificate", "value": cert}}]}).encode(),
        "keyinfo is a list": json.dumps({"keys": [{"keyinfo": ["x"], "keyvalue": {"type": "x509Certificate",
                                                                                  "value": cert}}]}).encode(),
        "keyvalue is a list": json.dumps({"keys": [{"keyinfo": {"x5t": "a"}, "keyvalue": []}]}).encode(),
        "value is a number": json.dumps({"keys": [{"keyinfo": {"x5t": 1}, "keyvalue": {"type": "x509Certificate",
                                                                                     "value": 12}}]}).encode(),
        "certificate is junk": json.dumps({"keys": [{"keyinfo": {"x5t": "a"}, "keyvalue": {
            "type": "x509Certificate", "value": base64.b64encode(b"junk").decode()}}]}).encode(),
        "entries are not objects": json.dumps({"keys": [1, None, "k", [], True]}).encode(),
        "keys is a string": json.dumps({"keys": "none"}).encode(),
        "a list document": b"[]",
        "a string document": b'"keys"',
        "not JSON": b"<html>hello</html>",
        "not UTF-8": b"\xff\xfe{\x00",
        "deeply nested": b"[" * 100_000 + b"]" * 100_000,
        "too large": b" " * (exchange_identity.MAX_METADATA_BYTES + 10),
    }


@pytest.mark.parametrize("case", list(_malformed()))
def test_a_malformed_metadata_document_is_an_invalid_proof(ews: ExchangeHarness, case: str) -> None:
    ews.state.metadata_override = _malformed()[case]
    with pytest.raises(ProofInvalid):
        _verifier(ews).verify(ews.state.identity_token(PANE), ADDRESS)


@pytest.mark.parametrize("case", ["keyinfo is a string", "deeply nested", "too large"])
def test_a_malformed_metadata_document_is_never_a_server_error(client: FlaskClient, ca: TestCA,
                                                               ews: ExchangeHarness, case: str) -> None:
    ews.state.metadata_override = _malformed()[case]
    resp = _session(client, ca, ews.state.identity_token(PANE))
    assert resp.status_code in (401, 503), resp.get_data(as_text=True)
    assert resp.json["error"]["code"] in ("mailbox_proof_invalid", "identity_unavailable")


def test_a_slow_metadata_host_name_is_cut_too(ews: ExchangeHarness) -> None:
    release = threading.Event()

    def slow_dns(host: str, port: int) -> list[Any]:
        release.wait(20)
        return [(socket.AF_INET, ("127.0.0.1", port))]

    settings = Settings.load({"SIDEBAR_ENV": "development", "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
                              **ews.settings_overrides(), "OUTBOUND_TIMEOUT_SECONDS": 1,
                              "EWS_ALLOWED_HOSTS": "127.0.0.1"})
    verifier = ExchangeIdentityVerifier(settings, resolver=slow_dns)
    token = ews.state.identity_token(PANE, amurl=f"https://exch.acme.example:{ews.server.port}{METADATA_PATH}")
    started = time.monotonic()
    try:
        with pytest.raises(ProofInvalid) as caught:
            verifier.verify(token, ADDRESS)
    finally:
        release.set()
    assert caught.value.code == "identity_unavailable"
    assert time.monotonic() - started < 1 + 1.0


def test_a_failed_refetch_does_not_block_the_keys_already_held(ews: ExchangeHarness,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = _verifier(ews)
    assert verifier.verify(ews.state.identity_token(PANE), ADDRESS).kind == "exchange"
    # A minute later a token with an unknown key forces a refetch, which fails...
    later = time.time() + exchange_identity.METADATA_MIN_REFETCH_SECONDS + 1
    monkeypatch.setattr(exchange_identity.time, "time", lambda: later)
    ews.inject_failure("500")
    with pytest.raises(ProofInvalid):
        verifier.verify(ews.state.identity_token(PANE, signer=new_signing_key("other")), ADDRESS)
    # ...but tokens signed with the published key still verify from the cache.
    assert verifier.verify(ews.state.identity_token(PANE), ADDRESS).kind == "exchange"
    assert verifier.fetches == 2
