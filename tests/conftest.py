"""Shared fixtures: a per-session CA, real Redis, protocol-level fakes on loopback https, the app.

Fakes are reached by the product only through configuration (``SALESFORCE_LOGIN_URL``,
``MS_AUTHORITY``, ``OUTBOUND_CA_BUNDLE`` ...), never by patching product code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient

from sandbox import microsoft as fake_ms
from sandbox import salesforce as fake_sf
from sandbox.harness.exchange import ExchangeHarness
from sandbox.https_client import PUBLIC_BASE_URL, HttpsClient
from sandbox.keepalive import KeepAliveFakeServer
from sandbox.redis_server import flush_keeping_claim, own_database
from sandbox.server import FakeServer
from sandbox.tls import CertPair, TestCA


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A CA generated for this test session."""
    return TestCA(str(tmp_path_factory.mktemp("ca")))


@pytest.fixture(scope="session")
def server_cert(ca: TestCA) -> CertPair:
    """A certificate for localhost / 127.0.0.1 signed by the session CA."""
    return ca.issue("loopback")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A database of our own on a real Redis (REDIS_URL), or a private redis-server."""
    with own_database() as url:
        yield url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the claimed database, emptied before and after each test."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    flush_keeping_claim(client)
    yield client
    flush_keeping_claim(client)
    client.close()


@dataclass
class RunningFake:
    """A fake service's state and its server."""

    state: Any
    server: FakeServer

    @property
    def url(self) -> str:
        """The fake's https origin."""
        return self.server.url

    @property
    def calls(self) -> Any:
        """The recorder of the requests it received."""
        return self.server.recorder


@pytest.fixture
def fake_salesforce(server_cert: CertPair) -> Iterator[RunningFake]:
    """A fake Salesforce (login host and instance) with one user, alice@acme.example."""
    state = fake_sf.FakeSalesforceState()
    state.add_user("alice@acme.example", "alice-pw", email="alice@acme.example", name="Alice Example")
    # Keep-alive, as Salesforce: a connection serves many requests.
    server = KeepAliveFakeServer(fake_sf.create_app(state), server_cert).start()
    state.base_url = server.url
    yield RunningFake(state, server)
    server.stop()


@pytest.fixture
def fake_microsoft(server_cert: CertPair) -> Iterator[RunningFake]:
    """A fake Microsoft identity platform (OpenID configuration, JWKS, tokens)."""
    state = fake_ms.FakeMicrosoftState()
    server = FakeServer(fake_ms.create_app(state), server_cert).start()
    state.base_url = server.url
    yield RunningFake(state, server)
    server.stop()


@pytest.fixture
def ews(ca: TestCA, server_cert: CertPair) -> Iterator[ExchangeHarness]:
    """The fake Exchange server (EWS, Autodiscover, identity-token metadata) with Alice's and Bob's mailboxes."""
    harness = ExchangeHarness(ca.ca_path, server_cert)
    yield harness
    harness.close()


@pytest.fixture
def fake_graph(server_cert: CertPair, fake_microsoft: RunningFake) -> Iterator[RunningFake]:
    """A fake Microsoft Graph over the fake identity platform's users and tokens."""
    from sandbox.graph import serve

    state, server = serve(fake_microsoft.state, server_cert)
    yield RunningFake(state, server)
    server.stop()


@dataclass
class GoogleFake:
    """The fake Google host: OAuth, Gmail and Calendar states and their one server."""

    google: Any
    gmail: Any
    calendar: Any
    server: FakeServer

    @property
    def url(self) -> str:
        """The fake's https origin."""
        return self.server.url

    @property
    def calls(self) -> Any:
        """The recorder of the requests it received."""
        return self.server.recorder

    def settings(self) -> dict[str, str]:
        """The settings that point the app at this fake."""
        return {
            "GOOGLE_CLIENT_ID": self.google.client_id,
            "GOOGLE_CLIENT_SECRET": self.google.client_secret,
            "GOOGLE_AUTH_URL": f"{self.url}/o/oauth2/v2/auth",
            "GOOGLE_TOKEN_URL": f"{self.url}/token",
            "GOOGLE_REVOKE_URL": f"{self.url}/revoke",
            "GMAIL_API_URL": self.url,
            "GOOGLE_CALENDAR_API_URL": f"{self.url}/calendar/v3",
        }


@pytest.fixture
def fake_google(server_cert: CertPair) -> Iterator[GoogleFake]:
    """A fake Google (OAuth, Gmail, Calendar) on one loopback https host, with no accounts yet."""
    from sandbox.gmail import serve_google

    google, gmail, calendar, server = serve_google(server_cert)
    yield GoogleFake(google, gmail, calendar, server)
    server.stop()


@pytest.fixture
def app_config(
    redis_url: str, ca: TestCA, fake_salesforce: RunningFake, fake_microsoft: RunningFake
) -> dict[str, Any]:
    """Production-like settings pointing at the fakes (tests override what they need)."""
    return {
        "SIDEBAR_ENV": "production",
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "REDIS_URL": redis_url,
        "KEY_PREFIX": "sstest:",
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "SALESFORCE_CLIENT_ID": fake_salesforce.state.client_id,
        "SALESFORCE_CLIENT_SECRET": fake_salesforce.state.client_secret,
        "SALESFORCE_LOGIN_URL": fake_salesforce.url,
        "SALESFORCE_SANDBOX_URL": fake_salesforce.url,
        "SALESFORCE_ALLOWED_HOSTS": f"{fake_salesforce.server.host}:{fake_salesforce.server.port}",
        "MS_CLIENT_ID": fake_microsoft.state.client_id,
        "MS_CLIENT_SECRET": fake_microsoft.state.client_secret,
        "MS_AUTHORITY": f"{fake_microsoft.url}/organizations",
        "OUTBOUND_CA_BUNDLE": ca.ca_path,
        "REQUIRE_MAILBOX_PROOF": "off",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def app(app_config: dict[str, Any], redis_client: redis.Redis) -> Iterator[Flask]:
    """The application, built by the one factory with the test configuration."""
    from backend import create_app

    application = create_app(app_config)
    application.test_client_class = HttpsClient
    yield application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app (https)."""
    return app.test_client()
