"""The Gmail consent dialog over HTTP: our OAuth web-server flow against the fake Google (OAuth, Gmail)."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from backend.connectors.google import REFRESH_SECRET
from backend.extensions import QUEUE_INTERACTIVE, services
from backend.jobs.sync import job_id_for
from sandbox.google import CALENDAR_EVENTS_READONLY, GMAIL_METADATA, GMAIL_READONLY
from sandbox.login import LoggedIn, dialog_payload, local_path, login
from sandbox.tls import TestCA
from tests.auth.test_microsoft import redis_dump
from tests.conftest import GoogleFake

ALICE = "alice@acme.example"
GRANT = re.compile(r'name="grant" value="([^"]+)"')
CALLBACK = "https://localhost:3000/auth/google/callback"


@pytest.fixture
def app_config(app_config: dict[str, Any], fake_google: GoogleFake) -> dict[str, Any]:
    """The test configuration, with Google pointing at the fake."""
    return {**app_config, **fake_google.settings()}


@pytest.fixture
def google(fake_google: GoogleFake) -> GoogleFake:
    """The fake Google with Alice's Workspace account (one alias) and her mailbox."""
    fake_google.google.add_user(ALICE, aliases=["a.example@acme.example"])
    fake_google.gmail.mailbox(ALICE)
    return fake_google


def start_consent(client: FlaskClient, who: LoggedIn) -> str:
    """POST /api/dialog for google, open its URL; returns where the dialog is sent (Google)."""
    resp = client.post("/api/dialog", json={"provider": "google"}, headers=who.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    url = resp.json["url"]  # type: ignore[index]
    assert url.startswith("https://localhost:3000/auth/google/start?ticket=")
    start = client.get(local_path(url))
    assert start.status_code == 302, start.get_data(as_text=True)
    return str(start.headers["Location"])


def authorize(location: str, ca_path: str, username: str = ALICE, action: str = "accept") -> str:
    """Play the person on the fake Google consent page; returns the redirect to our callback."""
    page = requests.get(location, verify=ca_path, timeout=10, allow_redirects=False)
    if page.status_code == 302:
        return str(page.headers["Location"])
    grant = GRANT.search(page.text)
    assert grant, page.text
    parts = urlsplit(location)
    resp = requests.post(f"{parts.scheme}://{parts.netloc}/o/oauth2/v2/auth/approve",
                         data={"grant": grant.group(1), "username": username, "action": action},
                         verify=ca_path, timeout=10, allow_redirects=False)
    assert resp.status_code == 302, resp.text
    return str(resp.headers["Location"])


def finish(client: FlaskClient, callback: str) -> tuple[int, dict[str, Any]]:
    """Follow the redirect to our callback; (status, payload handed to the task pane)."""
    assert callback.startswith(CALLBACK + "?"), callback
    resp = client.get(local_path(callback))
    return resp.status_code, dialog_payload(resp.get_data(as_text=True))


def connect(client: FlaskClient, ca: TestCA, who: LoggedIn, username: str = ALICE,
            action: str = "accept") -> tuple[int, dict[str, Any]]:
    """The whole consent dialog."""
    return finish(client, authorize(start_consent(client, who), ca.ca_path, username, action))


def sync_of(client: FlaskClient, who: LoggedIn) -> dict[str, Any]:
    """GET /api/sync."""
    resp = client.get("/api/sync", headers=who.headers)
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json  # type: ignore[assignment]
    return body


def test_the_pane_is_offered_gmail_when_google_is_configured(client: FlaskClient) -> None:
    assert client.get("/api/config").json["providers"]["google"] is True  # type: ignore[index]


def test_consent_activates_sync_and_enqueues_the_first_run(
    app: Flask, client: FlaskClient, ca: TestCA, google: GoogleFake
) -> None:
    who = login(client, ca.ca_path, mailbox=ALICE)
    location = start_consent(client, who)
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert location.startswith(f"{google.url}/o/oauth2/v2/auth?")
    assert query["client_id"] == google.google.client_id and query["response_type"] == "code"
    assert query["redirect_uri"] == CALLBACK
    assert query["scope"].split() == ["openid", "email", GMAIL_READONLY, CALENDAR_EVENTS_READONLY]
    assert GMAIL_METADATA not in query["scope"]
    assert query["code_challenge_method"] == "S256" and query["state"]
    assert (query["access_type"], query["prompt"], query["include_granted_scopes"]) == ("offline", "consent", "true")
    assert query["login_hint"] == ALICE

    status, payload = finish(client, authorize(location, ca.ca_path))
    assert status == 200, payload
    assert payload == {"status": "ok", "provider": "google", "mailbox": ALICE}

    # PKCE: the token request carried the verifier of the challenge.
    (token_call,) = [c for c in google.calls.matching("POST", "/token")]
    form = parse_qs(token_call.body.decode())
    digest = base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"][0].encode()).digest()).rstrip(b"=")
    assert digest.decode() == query["code_challenge"] and form["grant_type"] == ["authorization_code"]
    # The mailbox was read through the profile and its send-as aliases.
    assert len(google.calls.matching("GET", "/gmail/v1/users/me/profile")) == 1
    assert len(google.calls.matching("GET", "/gmail/v1/users/me/settings/sendAs")) == 1

    view = sync_of(client, who)
    assert (view["state"], view["provider"], view["mailbox"]) == ("running", "google", ALICE)
    with app.app_context():
        svc = services()
        assert job_id_for(who.uid) in svc.queue(QUEUE_INTERACTIVE).get_job_ids()
        mailbox = svc.store.mailboxes.get(who.uid)
        assert mailbox is not None and mailbox.aliases == ["a.example@acme.example"]
        stored = svc.store.secrets.get("mailbox", who.uid, REFRESH_SECRET)
        assert stored in google.google.refresh_tokens


def test_tokens_never_reach_redis_in_clear_or_the_logs(
    client: FlaskClient, ca: TestCA, google: GoogleFake, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    who = login(client, ca.ca_path, mailbox=ALICE)
    assert connect(client, ca, who)[1]["status"] == "ok"
    tokens = [*google.google.refresh_tokens, *google.google.access_tokens]
    assert len(tokens) >= 2
    blob = redis_dump(redis_url)
    assert f"secret:mailbox:{who.uid}:{REFRESH_SECRET}".encode() in blob  # stored, encrypted
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug"))
    for token in tokens:
        assert token.encode() not in blob and token not in logged


def test_an_alias_of_the_google_account_matches(client: FlaskClient, ca: TestCA, fake_google: GoogleFake) -> None:
    fake_google.google.add_user("alice.smith@acme.example", aliases=[ALICE])
    who = login(client, ca.ca_path, mailbox=ALICE)
    status, payload = connect(client, ca, who, username="alice.smith@acme.example")
    assert (status, payload["status"], payload["mailbox"]) == (200, "ok", "alice.smith@acme.example")


def test_another_mailbox_is_refused_and_a_working_connection_is_kept(
    app: Flask, client: FlaskClient, ca: TestCA, google: GoogleFake
) -> None:
    google.google.add_user("bob@gmail.example")
    who = login(client, ca.ca_path, mailbox=ALICE)
    assert connect(client, ca, who)[1]["status"] == "ok"
    with app.app_context():
        kept = services().store.secrets.get("mailbox", who.uid, REFRESH_SECRET)

    status, payload = connect(client, ca, who, username="bob@gmail.example")
    assert status == 400 and payload["error"]["code"] == "mailbox_mismatch"
    assert payload["error"]["message"] == ("You signed in as bob@gmail.example, but the add-in runs in "
                                           f"{ALICE}. Connect {ALICE} instead.")
    # Nothing stored; Bob's fresh refresh token was revoked at once; Alice's connection still works.
    assert google.google.revoked and google.google.revoked[-1] not in google.google.refresh_tokens
    view = sync_of(client, who)
    assert (view["state"], view["mailbox"]) == ("running", ALICE)
    with app.app_context():
        assert services().store.secrets.get("mailbox", who.uid, REFRESH_SECRET) == kept


@pytest.mark.parametrize(
    ("setup", "code", "words"),
    [
        ({"authorize_mode": "deny"}, "consent_denied", "You did not allow Sidebar Sync"),
        ({"authorize_mode": "unverified"}, "app_unverified", "not verified"),
        ({"issue_refresh_tokens": False}, "refresh_token_missing", "did not grant offline access"),
        ({"withheld_scopes": {CALENDAR_EVENTS_READONLY}}, "scopes_missing", "tick both boxes"),
    ],
)
def test_each_refusal_is_a_sentence_and_nothing_is_stored(
    app: Flask, client: FlaskClient, ca: TestCA, google: GoogleFake, setup: dict[str, Any], code: str,
    words: str,
) -> None:
    for name, value in setup.items():
        setattr(google.google, name, value)
    who = login(client, ca.ca_path, mailbox=ALICE)
    status, payload = connect(client, ca, who)
    assert status == 400 and payload["error"]["code"] == code, payload
    assert words in payload["error"]["message"]
    assert sync_of(client, who)["state"] == "not_activated"
    with app.app_context():
        assert services().store.secrets.get("mailbox", who.uid, REFRESH_SECRET) is None
    if code in ("scopes_missing",):
        assert not google.google.refresh_tokens  # revoked: it will not be kept


def test_a_token_holding_gmail_metadata_is_refused(client: FlaskClient, ca: TestCA, google: GoogleFake) -> None:
    # Granted earlier: include_granted_scopes brings it back into the new token.
    user = google.google.find_user(ALICE)
    assert user is not None
    user.granted.add(GMAIL_METADATA)
    who = login(client, ca.ca_path, mailbox=ALICE)
    status, payload = connect(client, ca, who)
    assert status == 400 and payload["error"]["code"] == "metadata_scope"


@pytest.mark.parametrize(
    ("override", "code"),
    [({"state": "<drop>"}, "state_missing"), ({"state": "forged"}, "state_invalid"),
     ({"code": "<drop>"}, "code_missing"), ({"code": "4/not-a-code"}, "code_rejected")],
)
def test_a_tampered_answer_is_refused(client: FlaskClient, ca: TestCA, google: GoogleFake,
                                      override: dict[str, str], code: str) -> None:
    who = login(client, ca.ca_path, mailbox=ALICE)
    answer = authorize(start_consent(client, who), ca.ca_path)
    params = {k: v[0] for k, v in parse_qs(urlsplit(answer).query).items()}
    params.update(override)
    params = {k: v for k, v in params.items() if v != "<drop>"}
    status, payload = finish(client, f"{CALLBACK}?{urlencode(params)}")
    assert status in (400, 401) and payload["error"]["code"] == code


def test_without_a_google_client_the_dialog_is_refused(
    app_config: dict[str, Any], redis_client: Any, ca: TestCA
) -> None:
    from backend import create_app
    from sandbox.https_client import HttpsClient

    application = create_app({**app_config, "GOOGLE_CLIENT_ID": "", "GOOGLE_CLIENT_SECRET": ""})
    application.test_client_class = HttpsClient
    client = application.test_client()
    who = login(client, ca.ca_path, mailbox=ALICE)
    resp = client.post("/api/dialog", json={"provider": "google"}, headers=who.headers)
    assert resp.status_code == 409 and resp.json["error"]["code"] == "provider_not_configured"  # type: ignore[index]
    assert client.get("/api/config").json["providers"]["google"] is False  # type: ignore[index]


def test_deactivate_revokes_the_google_grant(app: Flask, client: FlaskClient, ca: TestCA, google: GoogleFake) -> None:
    who = login(client, ca.ca_path, mailbox=ALICE)
    assert connect(client, ca, who)[1]["status"] == "ok"
    with app.app_context():
        token = services().store.secrets.get("mailbox", who.uid, REFRESH_SECRET)
    assert token in google.google.refresh_tokens
    resp = client.post("/api/sync/deactivate", headers=who.headers)
    assert resp.status_code == 200 and resp.json["state"] == "deactivated"  # type: ignore[index]
    assert token not in google.google.refresh_tokens and google.google.revoked[-1] == token
    with app.app_context():
        assert services().store.secrets.get("mailbox", who.uid, REFRESH_SECRET) is None


@pytest.mark.parametrize("kind", ["503", "429"])
def test_a_failed_reconnect_keeps_the_working_connection(app: Flask, client: FlaskClient, ca: TestCA,
                                                        google: GoogleFake, kind: str) -> None:
    # Revoking a refresh token ends the whole grant of that account at Google (the fake does so too).
    who = login(client, ca.ca_path, mailbox=ALICE)
    assert connect(client, ca, who)[1]["status"] == "ok"
    with app.app_context():
        kept = services().store.secrets.get("mailbox", who.uid, REFRESH_SECRET)
    assert kept in google.google.refresh_tokens
    google.gmail.faults.inject(kind, None)  # Gmail's profile read keeps failing while she connects again
    status, payload = connect(client, ca, who)
    assert status == 502 and payload["error"]["code"] == "google_unavailable"
    assert kept in google.google.refresh_tokens  # her working grant was not revoked with the new token
    google.gmail.faults.rules.clear()
    assert sync_of(client, who)["state"] == "running"
