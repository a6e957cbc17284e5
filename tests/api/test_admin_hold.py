"""An administrator's Disable holds a mailbox off: none of the person's ways back undoes it; Enable does."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.admin import actions
from backend.extensions import services
from sandbox.harness.exchange import ADDRESS, PASSWORD, ExchangeHarness
from sandbox.login import LoggedIn, dialog_payload, local_path, login
from sandbox.tls import TestCA
from tests.auth import test_google, test_microsoft
from tests.conftest import GoogleFake, RunningFake

LOCKED = "Your administrator turned sync off for this mailbox. Ask them to turn it back on."


@pytest.fixture
def app_config(app_config: dict[str, Any], ews: ExchangeHarness, fake_graph: RunningFake,
               fake_google: GoogleFake) -> dict[str, Any]:
    """Every provider's fake: Exchange, Microsoft 365 (identity + Graph), Google."""
    return {**app_config, **ews.settings_overrides(), "EWS_ALLOWED_HOSTS": "127.0.0.1", "EWS_TIMEOUT_SECONDS": 2,
            "GRAPH_URL": fake_graph.url, **fake_google.settings()}


@pytest.fixture
def alice(app: Flask, client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake,
          fake_google: GoogleFake) -> LoggedIn:
    """Alice, connected to Exchange, then disabled by her administrator."""
    fake_microsoft.state.add_user(ADDRESS)
    fake_google.google.add_user(ADDRESS)
    fake_google.gmail.mailbox(ADDRESS)
    who = login(client, ca.ca_path, mailbox=ADDRESS)
    assert _exchange(client, who).status_code == 200
    with app.app_context():
        assert actions.act(services().store, who.uid, "disable").status == "ok"
    return who


def _exchange(client: FlaskClient, who: LoggedIn) -> Any:
    return client.post("/api/sync/exchange", json={"login": ADDRESS, "password": PASSWORD}, headers=who.headers)


def _dialog(client: FlaskClient, who: LoggedIn, provider: str) -> tuple[int, dict[str, Any]]:
    url = client.post("/api/dialog", json={"provider": provider}, headers=who.headers).json["url"]  # type: ignore[index]
    resp = client.get(local_path(url))
    payload = dialog_payload(resp.get_data(as_text=True)) if resp.status_code != 302 else {}
    return resp.status_code, payload


def _refusal(client: FlaskClient, who: LoggedIn, path: str) -> tuple[int, str, str]:
    if path == "exchange":
        resp = _exchange(client, who)
        return resp.status_code, resp.json["error"]["code"], resp.json["error"]["message"]
    if path == "resume":
        resp = client.post("/api/sync/resume", headers=who.headers)
        return resp.status_code, resp.json["error"]["code"], resp.json["error"]["message"]
    status, payload = _dialog(client, who, path)
    return status, payload.get("error", {}).get("code", ""), payload.get("error", {}).get("message", "")


@pytest.mark.parametrize("path", ["exchange", "microsoft", "google", "resume"])
def test_each_way_back_is_refused_while_held(app: Flask, client: FlaskClient, alice: LoggedIn, path: str) -> None:
    assert _refusal(client, alice, path) == (403, "locked_by_admin", LOCKED)
    with app.app_context():
        mailbox = services().store.mailboxes.get(alice.uid)
        assert mailbox is not None and mailbox.state.value == "disabled_error" and mailbox.admin_hold


@pytest.mark.parametrize("path", ["exchange", "microsoft", "google", "resume"])
def test_deactivating_keeps_the_hold(app: Flask, client: FlaskClient, alice: LoggedIn, path: str) -> None:
    assert client.post("/api/sync/deactivate", headers=alice.headers).status_code == 200
    assert _refusal(client, alice, path)[:2] == (403, "locked_by_admin")
    with app.app_context():  # the administrator's Enable lifts the hold; the person connects again
        outcome = actions.act(services().store, alice.uid, "enable")
        assert (outcome.status, outcome.state, outcome.run_now) == ("ok", "deactivated", False)
    assert _exchange(client, alice).status_code == 200


def test_a_disable_during_a_consent_wins(app: Flask, client: FlaskClient, ca: TestCA, alice: LoggedIn) -> None:
    with app.app_context():
        assert actions.act(services().store, alice.uid, "enable").status == "ok"
    location = test_microsoft.start_consent(client, alice)
    with app.app_context():
        assert actions.act(services().store, alice.uid, "disable").status == "ok"
    status, payload = test_microsoft.finish(client, test_microsoft.authorize(location, ca.ca_path, ADDRESS))
    assert status == 403 and payload["error"]["code"] == "locked_by_admin"
    with app.app_context():
        mailbox = services().store.mailboxes.get(alice.uid)
        assert mailbox is not None and mailbox.provider == "exchange" and mailbox.state.value == "disabled_error"
        assert services().store.secrets.get("mailbox", alice.uid, "msal_cache") is None


def test_after_the_administrators_enable_the_person_reconnects(app: Flask, client: FlaskClient, ca: TestCA,
                                                               alice: LoggedIn) -> None:
    with app.app_context():
        assert actions.act(services().store, alice.uid, "enable").state == "running"
    assert client.post("/api/sync/pause", headers=alice.headers).status_code == 200
    assert client.post("/api/sync/resume", headers=alice.headers).status_code == 200
    assert _exchange(client, alice).status_code == 200
    status, payload = test_google.connect(client, ca, alice, username=ADDRESS)
    assert status == 200 and payload["status"] == "ok"


def test_an_administrators_pause_is_the_persons_to_resume(app: Flask, client: FlaskClient, alice: LoggedIn) -> None:
    with app.app_context():
        store = services().store
        actions.act(store, alice.uid, "enable")
        assert actions.act(store, alice.uid, "pause").state == "paused"
    assert client.post("/api/sync/resume", headers=alice.headers).json["state"] == "running"


def test_a_held_mailbox_offers_asking_the_administrator_not_reconnect(app: Flask, client: FlaskClient,
                                                                     alice: LoggedIn) -> None:
    body = client.get("/api/sync", headers=alice.headers).json
    assert body["state"] == "disabled_error" and body["error"]["code"] == "disabled_by_admin"
    assert body["error"]["action"] == "ask_admin"
    with app.app_context():  # after the Enable, an error of the person's own is theirs to reconnect
        store = services().store
        assert actions.act(store, alice.uid, "enable").status == "ok"
        store.mailboxes.disable(alice.uid, "mailbox_auth_failed", "Exchange refused the saved sign-in 3 time(s)")
    assert client.get("/api/sync", headers=alice.headers).json["error"]["action"] == "reconnect"
