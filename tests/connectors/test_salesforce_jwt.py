"""The Salesforce JWT bearer flow against the fake: the claims, pre-authorisation, records created as the person."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from flask import Flask

from backend import create_app
from backend.config import ConfigError, Settings
from backend.connectors.crm import EmailDraft, WritePlan
from backend.connectors.salesforce import JwtBearer, JwtCredentials, SalesforceOAuth, open_crm
from backend.connectors.salesforce.jwt_bearer import ASSERTION_LIFETIME_SECONDS, assertion, private_key_pem
from backend.errors import AuthRevoked, NotPreauthorized, ServiceMisconfigured
from backend.extensions import services
from sandbox.salesforce_jwt import jwt_key_pair

ORG = "00D000000000001EAA"


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    """(private key PEM, certificate PEM)."""
    return jwt_key_pair()


@pytest.fixture
def app_config(app_config: dict[str, Any], keys: tuple[str, str], fake_salesforce: Any) -> dict[str, Any]:
    """The key configured; the fake holds its certificate; Bob is a pre-authorised colleague of Alice."""
    fake_salesforce.state.jwt_certificates.append(keys[1])
    fake_salesforce.state.add_user("bob@acme.example", email="bob@acme.example", name="Bob Example")
    fake_salesforce.state.preauthorized.add("bob@acme.example")
    return {**app_config, "SALESFORCE_JWT_PRIVATE_KEY": keys[0]}


@pytest.fixture
def bearer(app: Flask) -> Iterator[JwtBearer]:
    """The app's JWT bearer client (app context pushed)."""
    with app.app_context():
        found = services().clients.salesforce_jwt
        assert found is not None and found.configured
        yield found


def test_the_assertion_has_the_claims_salesforce_requires(keys: tuple[str, str]) -> None:
    key = jwt.api_jws.get_algorithm_by_name("RS256").prepare_key(keys[0])
    now = time.time()
    signed = assertion("consumer-key", key, "bob@acme.example", "https://test.salesforce.com", now)
    claims = jwt.decode(signed, key.public_key(), algorithms=["RS256"], audience="https://test.salesforce.com")
    assert claims["iss"] == "consumer-key" and claims["sub"] == "bob@acme.example"
    assert claims["exp"] - int(now) == ASSERTION_LIFETIME_SECONDS <= 180
    assert jwt.get_unverified_header(signed)["alg"] == "RS256"


def test_the_key_setting_takes_pem_text_or_a_path(keys: tuple[str, str], tmp_path: Any,
                                                  app_config: dict[str, Any]) -> None:
    path = tmp_path / "key.pem"
    path.write_text(keys[0])
    assert private_key_pem(str(path)) == keys[0]
    assert private_key_pem(keys[0].replace("\n", "\\n")) == keys[0]
    with pytest.raises(ConfigError):
        private_key_pem(str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="PEM private key"):
        create_app({**app_config, "SALESFORCE_JWT_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\\nnot a key"})


def test_a_preauthorised_person_gets_a_token_with_no_refresh_token(bearer: JwtBearer, fake_salesforce: Any) -> None:
    tokens = bearer.token(fake_salesforce.url, "bob@acme.example")
    assert tokens.access_token and tokens.refresh_token is None
    assert fake_salesforce.state.access_tokens[tokens.access_token].username == "bob@acme.example"
    assert fake_salesforce.state.token_requests[-1] == "urn:ietf:params:oauth:grant-type:jwt-bearer"


def test_a_person_not_preauthorised_is_refused_as_not_authorized(bearer: JwtBearer, fake_salesforce: Any) -> None:
    # Alice exists and is active, but no permission set pre-authorises her for the app.
    with pytest.raises(NotPreauthorized) as refused:
        bearer.token(fake_salesforce.url, "alice@acme.example")
    assert refused.value.code == "salesforce_not_authorized"
    assert isinstance(refused.value, AuthRevoked)


def test_an_inactive_person_is_refused(bearer: JwtBearer, fake_salesforce: Any) -> None:
    fake_salesforce.state.users["bob@acme.example"].is_active = False
    with pytest.raises(AuthRevoked) as refused:
        bearer.token(fake_salesforce.url, "bob@acme.example")
    assert not isinstance(refused.value, NotPreauthorized)


def test_a_key_the_connected_app_does_not_hold_is_our_misconfiguration(app: Flask, fake_salesforce: Any) -> None:
    other, _ = jwt_key_pair()
    with app.app_context():
        settings: Settings = services().settings
        wrong = JwtBearer(Settings.load({**settings.__dict__, "extra": None, "SALESFORCE_JWT_PRIVATE_KEY": other}),
                          SalesforceOAuth(settings))
    with pytest.raises(ServiceMisconfigured, match="invalid assertion"):
        wrong.token(fake_salesforce.url, "bob@acme.example")


def test_a_wrong_audience_is_refused(bearer: JwtBearer, fake_salesforce: Any) -> None:
    fake_salesforce.state.base_url = "https://login.salesforce.com"
    try:
        with pytest.raises(ServiceMisconfigured, match="audience"):
            bearer.token(fake_salesforce.server.url, "bob@acme.example")
    finally:
        fake_salesforce.state.base_url = fake_salesforce.server.url


def test_records_are_created_by_the_signed_in_person_and_a_refused_token_signs_again(
        bearer: JwtBearer, fake_salesforce: Any) -> None:
    bob = fake_salesforce.state.users["bob@acme.example"]
    store = services().store
    credentials = JwtCredentials(bearer, store.secrets, "u-bob", "bob@acme.example", fake_salesforce.url,
                                 fake_salesforce.url)
    crm = open_crm(services().settings, credentials, ORG, bob.user_id)
    draft = EmailDraft(key="<m1@x>", subject="Hello", body="Body", from_address="x@customer.example",
                       from_name="X", to_addresses=["bob@acme.example"], cc_addresses=[],
                       message_date=datetime(2026, 11, 20, tzinfo=UTC), outgoing=False, to_ids=[bob.user_id],
                       from_id="", people_ids=[])
    assert crm.write(WritePlan(emails=[draft])).emails_written == 1
    fake_salesforce.state.expire_access_tokens()
    assert crm.write(WritePlan(emails=[EmailDraft(**{**draft.__dict__, "key": "<m2@x>"})])).emails_written == 1
    crm.close()
    messages = fake_salesforce.state.rest.all("EmailMessage")
    assert [m["CreatedById"] for m in messages] == [bob.user_id, bob.user_id]
    assert fake_salesforce.state.token_requests.count("urn:ietf:params:oauth:grant-type:jwt-bearer") == 2
    assert credentials.refreshes == 2
