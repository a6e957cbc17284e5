"""API sessions: bearer tokens that expire and can be revoked; one JSON error format; bad input."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from backend.security.crypto import Purpose
from sandbox.login import PANE_VERIFIER, login, salesforce_dialog_code
from sandbox.tls import TestCA
from tests.conftest import RunningFake


def _error(resp: Any) -> str:
    assert resp.is_json, resp.get_data(as_text=True)
    code: str = resp.json["error"]["code"]
    assert resp.json["error"]["message"]
    assert "Traceback" not in resp.get_data(as_text=True)
    return code


def test_login_gives_a_token_that_works(client: FlaskClient, ca: TestCA) -> None:
    who = login(client, ca.ca_path)
    me = client.get("/api/me", headers=who.headers).json
    assert me is not None
    assert me["user"]["email"] == "alice@acme.example"
    assert me["mailbox"] == {"address": "alice@acme.example", "verified": False, "proof": None}
    assert me["salesforce"]["username"] == "alice@acme.example"
    assert me["salesforce"]["environment"] == "production"


def test_missing_token_is_401(client: FlaskClient) -> None:
    resp = client.get("/api/me")
    assert resp.status_code == 401 and _error(resp) == "unauthorized"


@pytest.mark.parametrize("header", ["Bearer nonsense", "Bearer ", "Basic abc", "Bearer a.b.c"])
def test_tampered_or_malformed_token_is_401(client: FlaskClient, header: str) -> None:
    resp = client.get("/api/me", headers={"Authorization": header})
    assert resp.status_code == 401 and _error(resp) in {"invalid_token", "unauthorized"}


def test_token_with_a_changed_signature_is_401(client: FlaskClient, ca: TestCA) -> None:
    who = login(client, ca.ca_path)
    tampered = who.token[:-3] + ("AAA" if not who.token.endswith("AAA") else "BBB")
    resp = client.get("/api/me", headers={"Authorization": f"Bearer {tampered}"})
    assert resp.status_code == 401 and _error(resp) == "invalid_token"


def test_token_signed_with_another_key_is_401(client: FlaskClient, ca: TestCA) -> None:
    who = login(client, ca.ca_path)
    forged = URLSafeTimedSerializer("another-secret-" * 4, salt=Purpose.API_TOKEN.value).dumps(
        {"sid": "x", "uid": who.uid})
    resp = client.get("/api/me", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status_code == 401 and _error(resp) == "invalid_token"


def test_expired_token_is_401(client: FlaskClient, ca: TestCA, app_config: dict[str, Any]) -> None:
    login(client, ca.ca_path)

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:  # signed eight days ago (the lifetime is seven)
            return int(time.time()) - 8 * 24 * 3600

    old = URLSafeTimedSerializer(app_config["SECRET_KEY"], salt=Purpose.API_TOKEN.value, signer=PastSigner)
    token = old.dumps({"sid": "whatever", "uid": "whoever"})
    resp = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401 and _error(resp) == "token_expired"


def test_logout_revokes_the_token(client: FlaskClient, ca: TestCA) -> None:
    who = login(client, ca.ca_path)
    assert client.delete("/api/session", headers=who.headers).status_code == 204
    resp = client.get("/api/me", headers=who.headers)
    assert resp.status_code == 401 and _error(resp) == "token_revoked"


def test_logout_of_one_pane_keeps_the_other(client: FlaskClient, ca: TestCA) -> None:
    first, second = login(client, ca.ca_path), login(client, ca.ca_path)
    client.delete("/api/session", headers=first.headers)
    assert client.get("/api/me", headers=second.headers).status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": "{}", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": b"\xff\xfe", "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": "[" * 15000, "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": '{"a":' * 2500 + "1" + "}" * 2500, "content_type": "application/json"}, 400, "invalid_json"),
        ({"json": ["a", "list"]}, 400, "invalid_input"),
        ({"json": {"mailbox": "alice@acme.example"}}, 400, "invalid_input"),
        ({"json": {"code": "x", "mailbox": "not-an-address"}}, 400, "invalid_input"),
        ({"json": {"code": "x", "mailbox": 42}}, 400, "invalid_input"),
        ({"json": {"code": "x\u0000y", "mailbox": "alice@acme.example"}}, 400, "invalid_input"),
        ({"json": {"code": "x" * 3000, "mailbox": "alice@acme.example"}}, 400, "invalid_input"),
        ({"json": {"code": "forged", "mailbox": "alice@acme.example"}}, 400, "invalid_code"),
        ({"data": "{" + " " * 20000 + "}", "content_type": "application/json"}, 413, "payload_too_large"),
        ({"data": "x" * (3 * 1024 * 1024), "content_type": "application/json"}, 413, "payload_too_large"),
    ],
)
def test_bad_session_requests_get_a_specific_4xx(
    client: FlaskClient, kwargs: dict[str, Any], status: int, code: str
) -> None:
    resp = client.post("/api/session", **kwargs)
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert _error(resp) == code


def test_unknown_api_routes_and_methods_answer_json(client: FlaskClient, ca: TestCA) -> None:
    who = login(client, ca.ca_path)
    resp = client.get("/api/does-not-exist", headers=who.headers)
    assert resp.status_code == 404 and _error(resp) == "not_found"
    resp = client.get("/api/does-not-exist")
    assert resp.status_code == 404 and _error(resp) == "not_found"
    resp = client.post("/api/me", headers=who.headers)
    assert resp.status_code == 405 and _error(resp) == "method_not_allowed"


def test_unexpected_errors_are_json_without_internals(app: Flask, client: FlaskClient) -> None:
    def boom() -> str:
        raise RuntimeError("secret internal detail")

    app.add_url_rule("/api/test-boom", "api.test_boom", boom)
    from backend.api.session import PUBLIC_ENDPOINTS

    PUBLIC_ENDPOINTS.add("api.test_boom")
    try:
        resp = client.get("/api/test-boom")
    finally:
        PUBLIC_ENDPOINTS.discard("api.test_boom")
    assert resp.status_code == 500 and _error(resp) == "internal_error"
    assert "secret internal detail" not in resp.get_data(as_text=True)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"provider": "yahoo"}, "invalid_input"),
        ({}, "invalid_input"),
        ({"provider": "google"}, "provider_not_configured"),  # no GOOGLE_CLIENT_ID in this configuration
    ],
)
def test_dialog_rejects_unknown_or_unconfigured_providers(
    client: FlaskClient, ca: TestCA, body: dict[str, Any], code: str
) -> None:
    who = login(client, ca.ca_path)
    resp = client.post("/api/dialog", json=body, headers=who.headers)
    assert resp.status_code in (400, 409) and _error(resp) == code


def test_dialog_needs_a_token(client: FlaskClient) -> None:
    resp = client.post("/api/dialog", json={"provider": "microsoft"})
    assert resp.status_code == 401


def test_openapi_describes_every_api_route(app: Flask, client: FlaskClient) -> None:
    doc = client.get("/api/openapi.json").json
    assert doc is not None and doc["openapi"].startswith("3.")
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint.startswith("api.test_"):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        path = path.replace("{int:", "{").replace("{path:", "{")
        assert path in doc["paths"], f"{rule.rule} is not in the OpenAPI document"
        for method in rule.methods - {"HEAD", "OPTIONS"}:  # type: ignore[operator]
            assert method.lower() in doc["paths"][path], f"{method} {rule.rule} is not described"


def test_client_config_is_public_and_has_no_secrets(client: FlaskClient, app_config: dict[str, Any]) -> None:
    resp = client.get("/api/config")
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    assert app_config["MS_CLIENT_SECRET"] not in text and app_config["SALESFORCE_CLIENT_SECRET"] not in text
    assert resp.json is not None and resp.json["providers"]["salesforce"] is True


def test_required_proof_is_checked_before_the_code_is_spent(
    app_config: dict[str, Any], redis_client: Any, ca: TestCA, fake_microsoft: RunningFake
) -> None:
    from backend import create_app
    from sandbox.https_client import HttpsClient

    application = create_app({**app_config, "REQUIRE_MAILBOX_PROOF": "on"})
    application.test_client_class = HttpsClient
    client = application.test_client()
    code = salesforce_dialog_code(client, ca.ca_path)
    resp = client.post("/api/session", json={"code": code, "verifier": PANE_VERIFIER,
                                              "mailbox": "alice@acme.example"})
    assert resp.status_code == 401 and _error(resp) == "mailbox_proof_required"
    proof = fake_microsoft.state.naa_token("alice@acme.example")
    resp = client.post("/api/session", json={"code": code, "verifier": PANE_VERIFIER,
                                              "mailbox": "alice@acme.example", "mailbox_proof": proof})
    assert resp.status_code == 201
