"""Issue 18, item 3: a bearer token must not outlive the Salesforce login it came from."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.extensions import services
from backend.jobs.context import use_app
from backend.jobs.sync import enqueue_sync
from sandbox.login import LoggedIn, login
from sandbox.tls import TestCA
from tests.helpers import run_queued
from tests.sync.items import OWNER, ListMailbox, mail

CHECK_SECONDS = 1


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """Salesforce checked at most every second, so a test can wait the cache out."""
    return {**app_config, "SALESFORCE_CHECK_SECONDS": CHECK_SECONDS}


@pytest.fixture
def alice(client: FlaskClient, ca: TestCA) -> LoggedIn:
    """Alice's task pane session."""
    return login(client, ca.ca_path)


def _stolen_token_requests(client: FlaskClient, who: LoggedIn) -> list[Any]:
    return [
        client.get("/api/sync", headers=who.headers),
        client.put("/api/sync/settings", json={"sync_emails": False}, headers=who.headers),
        client.post("/api/dialog", json={"provider": "salesforce"}, headers=who.headers),
    ]


def test_a_token_stops_working_when_salesforce_revokes_the_login(client: FlaskClient, alice: LoggedIn,
                                                                  fake_salesforce: Any) -> None:
    fake_salesforce.state.revoke_refresh_tokens("alice@acme.example")  # refresh and access tokens
    time.sleep(CHECK_SECONDS + 0.2)  # the cached "still fine" runs out
    first, *rest = _stolen_token_requests(client, alice)
    assert first.status_code == 401 and first.json["error"]["code"] == "salesforce_revoked"
    assert [r.status_code for r in rest] == [401, 401]
    assert client.get("/api/me", headers=alice.headers).status_code == 401


def test_within_the_cache_window_salesforce_is_not_asked_again(client: FlaskClient, alice: LoggedIn,
                                                                fake_salesforce: Any) -> None:
    before = len(fake_salesforce.calls.calls)
    assert all(r.status_code == 200 for r in _stolen_token_requests(client, alice)[:1])
    assert len(fake_salesforce.calls.calls) == before


def test_an_idle_session_ends(app_config: dict[str, Any], ca: TestCA, redis_client: Any) -> None:
    from backend import create_app
    from tests.conftest import HttpsClient

    app = create_app({**app_config, "API_SESSION_IDLE_SECONDS": 2, "SALESFORCE_CHECK_SECONDS": 600})
    app.test_client_class = HttpsClient
    client = app.test_client()
    who = login(client, ca.ca_path)
    for _ in range(3):  # in use: each request extends it
        time.sleep(1)
        assert client.get("/api/sync", headers=who.headers).status_code == 200
    time.sleep(2.5)
    resp = client.get("/api/sync", headers=who.headers)
    assert resp.status_code == 401 and resp.json["error"]["code"] == "token_revoked"


def test_log_out_everywhere(client: FlaskClient, ca: TestCA, alice: LoggedIn) -> None:
    other = login(client, ca.ca_path)  # Alice in a second Outlook
    assert client.get("/api/sync", headers=other.headers).status_code == 200
    assert client.delete("/api/sessions", headers=alice.headers).status_code == 204
    for who in (alice, other):
        resp = client.get("/api/sync", headers=who.headers)
        assert resp.status_code == 401 and resp.json["error"]["code"] == "token_revoked"


@pytest.fixture
def worker_app(app: Flask) -> Iterator[Flask]:
    """The app as the worker's app (jobs run in this process)."""
    use_app(app)
    try:
        yield app
    finally:
        use_app(None)


def test_the_worker_ends_sessions_when_salesforce_refuses_a_refresh(client: FlaskClient, alice: LoggedIn,
                                                                    worker_app: Flask,
                                                                    fake_salesforce: Any) -> None:
    box = ListMailbox()
    box.add("inbox", mail())
    with worker_app.app_context():
        svc = services()
        svc.clients.mailbox_factory = lambda provider, ctx: box
        svc.store.mailboxes.activate(alice.uid, "list", OWNER, [], {})
        fake_salesforce.state.revoke_refresh_tokens("alice@acme.example")
        assert enqueue_sync(alice.uid, interactive=True)
        run_queued()
        user = svc.store.users.get(alice.uid)
        assert user is not None and user.salesforce_status == "revoked"
    # Even inside the web's cache window, the token is dead.
    resp = client.get("/api/sync", headers=alice.headers)
    assert resp.status_code == 401 and resp.json["error"]["code"] == "token_revoked"
