"""The Microsoft 365 consent dialog over HTTP: msal against the fake identity platform and fake Graph."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient

from backend.extensions import QUEUE_INTERACTIVE, services
from backend.jobs.sync import job_id_for
from sandbox.login import LoggedIn, dialog_payload, local_path, login
from sandbox.tls import TestCA
from tests.conftest import RunningFake

ALICE = "alice@acme.example"
GRANT = re.compile(r'name="grant" value="([^"]+)"')


@pytest.fixture
def app_config(app_config: dict[str, Any], fake_graph: RunningFake) -> dict[str, Any]:
    """The test configuration, with Graph pointing at the fake."""
    return {**app_config, "GRAPH_URL": fake_graph.url}


@pytest.fixture
def ms(fake_microsoft: RunningFake) -> Any:
    """The identity fake's state, with Alice's work account (not yet consented)."""
    fake_microsoft.state.add_user(ALICE, aliases=["a.example@acme.example"])
    return fake_microsoft.state


def start_consent(client: FlaskClient, who: LoggedIn) -> str:
    """POST /api/dialog for microsoft, open its URL; returns where the dialog is sent (Microsoft)."""
    resp = client.post("/api/dialog", json={"provider": "microsoft"}, headers=who.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    url = resp.json["url"]  # type: ignore[index]
    assert url.startswith("https://localhost:3000/auth/microsoft/start?ticket=")
    start = client.get(local_path(url))
    assert start.status_code == 302, start.get_data(as_text=True)
    return str(start.headers["Location"])


def authorize(location: str, ca_path: str, username: str = ALICE, action: str = "accept") -> str:
    """Play the person on the fake Microsoft sign-in/consent page; returns the redirect to our callback."""
    page = requests.get(location, verify=ca_path, timeout=10, allow_redirects=False)
    if page.status_code == 302:
        return str(page.headers["Location"])
    grant = GRANT.search(page.text)
    assert grant, page.text
    parts = urlsplit(location)
    tenant = parts.path.split("/")[1]
    resp = requests.post(f"{parts.scheme}://{parts.netloc}/{tenant}/oauth2/v2.0/authorize/approve",
                         data={"grant": grant.group(1), "username": username, "action": action},
                         verify=ca_path, timeout=10, allow_redirects=False)
    assert resp.status_code == 302, resp.text
    return str(resp.headers["Location"])


def finish(client: FlaskClient, callback: str) -> tuple[int, dict[str, Any]]:
    """Follow the redirect to our callback; (status, payload handed to the task pane)."""
    assert callback.startswith("https://localhost:3000/auth/microsoft/callback?"), callback
    resp = client.get(local_path(callback))
    return resp.status_code, dialog_payload(resp.get_data(as_text=True))


def sync_of(client: FlaskClient, who: LoggedIn) -> dict[str, Any]:
    """GET /api/sync."""
    resp = client.get("/api/sync", headers=who.headers)
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json  # type: ignore[assignment]
    return body


def connect(client: FlaskClient, ca: TestCA, who: LoggedIn, username: str = ALICE,
            action: str = "accept") -> tuple[int, dict[str, Any]]:
    """The whole consent dialog."""
    return finish(client, authorize(start_consent(client, who), ca.ca_path, username, action))


def test_consent_activates_sync_and_enqueues_the_first_run(
    app: Flask, client: FlaskClient, ca: TestCA, ms: Any, fake_graph: RunningFake, fake_microsoft: RunningFake
) -> None:
    who = login(client, ca.ca_path, mailbox=ALICE)
    assert sync_of(client, who)["state"] == "not_activated"
    location = start_consent(client, who)
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert location.startswith(f"{fake_microsoft.url}/organizations/oauth2/v2.0/authorize?")
    assert query["client_id"] == ms.client_id and query["response_type"] == "code"
    assert query["redirect_uri"] == "https://localhost:3000/auth/microsoft/callback"
    assert set(query["scope"].split()) == {"Mail.Read", "Calendars.Read", "Contacts.Read", "User.Read",
                                           "offline_access", "openid", "profile"}
    assert query["code_challenge_method"] == "S256" and query["nonce"] and query["state"]
    assert query["login_hint"] == ALICE

    status, payload = finish(client, authorize(location, ca.ca_path))
    assert status == 200
    assert payload == {"status": "ok", "provider": "microsoft", "mailbox": ALICE}

    # PKCE: the token request carried the verifier of the challenge.
    token_calls = [c for c in fake_microsoft.calls.matching("POST") if c.path.endswith("/oauth2/v2.0/token")]
    form = parse_qs(token_calls[-1].body.decode())
    verifier = form["code_verifier"][0]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert digest == query["code_challenge"] and form["grant_type"] == ["authorization_code"]
    # The mailbox was read through Graph's /me with its aliases.
    me = fake_graph.calls.matching("GET", "/v1.0/me")
    assert len(me) == 1 and me[0].query["$select"] == ["mail,userPrincipalName,proxyAddresses,displayName"]

    view = sync_of(client, who)
    assert (view["state"], view["provider"], view["mailbox"]) == ("running", "microsoft", ALICE)
    assert view["connection"]["tenant_id"] == "tenant-contoso"
    with app.app_context():
        svc = services()
        assert job_id_for(who.uid) in svc.queue(QUEUE_INTERACTIVE).get_job_ids()
        mailbox = svc.store.mailboxes.get(who.uid)
        assert mailbox is not None and mailbox.aliases == ["a.example@acme.example"]
        assert svc.store.secrets.get("mailbox", who.uid, "msal_cache")


def redis_dump(redis_url: str) -> bytes:
    """Every key and value in our Redis database (strings, hashes, lists, sets), as bytes."""
    raw = redis.Redis.from_url(redis_url)
    parts: list[bytes] = []
    for key in raw.scan_iter("*"):
        kind = raw.type(key)
        parts.append(key)
        if kind == b"string":
            parts.append(raw.get(key) or b"")
        elif kind == b"hash":
            parts.extend(b"%s=%s" % kv for kv in raw.hgetall(key).items())
        elif kind == b"list":
            parts.extend(raw.lrange(key, 0, -1))
        elif kind == b"set":
            parts.extend(raw.smembers(key))
        elif kind == b"zset":
            parts.extend(raw.zrange(key, 0, -1))
    raw.close()
    return b"\n".join(parts)


def test_tokens_never_reach_redis_in_clear_or_the_logs(
    app: Flask, client: FlaskClient, ca: TestCA, ms: Any, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    who = login(client, ca.ca_path, mailbox=ALICE)
    assert connect(client, ca, who)[1]["status"] == "ok"
    secrets_ = [*ms.refresh_tokens, *ms.access_tokens]
    assert len(secrets_) >= 2
    blob = redis_dump(redis_url)
    assert f"secret:mailbox:{who.uid}:msal_cache".encode() in blob  # stored, encrypted
    for token in secrets_:
        assert token.encode() not in blob
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug"))
    for token in secrets_:
        assert token not in logged


def test_account_matched_by_alias_is_accepted(client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake) -> None:
    fake_microsoft.state.add_user("alice.smith@acme.example", aliases=[ALICE])
    who = login(client, ca.ca_path, mailbox=ALICE)
    status, payload = connect(client, ca, who, username="alice.smith@acme.example")
    assert (status, payload["status"], payload["mailbox"]) == (200, "ok", "alice.smith@acme.example")


def test_another_account_is_refused_as_mailbox_mismatch(
    app: Flask, client: FlaskClient, ca: TestCA, ms: Any
) -> None:
    ms.add_user("bob@acme.example")
    who = login(client, ca.ca_path, mailbox=ALICE)
    status, payload = connect(client, ca, who, username="bob@acme.example")
    assert status == 400
    assert payload["error"]["code"] == "mailbox_mismatch"
    assert "bob@acme.example" in payload["error"]["message"] and ALICE in payload["error"]["message"]
    assert sync_of(client, who)["state"] == "not_activated"
    with app.app_context():
        assert services().store.secrets.get("mailbox", who.uid, "msal_cache") is None


def _callback_with(client: FlaskClient, who: LoggedIn, ca: TestCA, **override: str) -> tuple[int, dict[str, Any]]:
    """Run start, get a real answer from Microsoft, then change some of its parameters."""
    answer = authorize(start_consent(client, who), ca.ca_path)
    params = {k: v[0] for k, v in parse_qs(urlsplit(answer).query).items()}
    params.update(override)
    params = {k: v for k, v in params.items() if v != "<drop>"}
    return finish(client, f"https://localhost:3000/auth/microsoft/callback?{urlencode(params)}")


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"state": "<drop>"}, "state_missing"),
        ({"state": "forged-state"}, "state_invalid"),
    ],
)
def test_missing_or_wrong_state_is_refused(client: FlaskClient, ca: TestCA, ms: Any, override: dict[str, str],
                                           code: str) -> None:
    who = login(client, ca.ca_path, mailbox=ALICE)
    status, payload = _callback_with(client, who, ca, **override)
    assert (status, payload["error"]["code"]) == (400, code)
    assert sync_of(client, who)["state"] == "not_activated"


def test_answer_for_another_window_is_refused(app: Flask, client: FlaskClient, ca: TestCA, ms: Any) -> None:
    who = login(client, ca.ca_path, mailbox=ALICE)
    callback = authorize(start_consent(client, who), ca.ca_path)
    stranger = app.test_client()  # another browser: no dialog session
    status, payload = finish(stranger, callback)
    assert (status, payload["error"]["code"]) == (400, "state_mismatch")


def test_code_issued_to_another_client_is_refused(client: FlaskClient, ca: TestCA, ms: Any) -> None:
    who = login(client, ca.ca_path, mailbox=ALICE)
    other = next(iter(ms.other_clients))
    foreign = ms.issue_code(ALICE, client_id=other, redirect_uri="https://localhost:3000/auth/microsoft/callback")
    status, payload = _callback_with(client, who, ca, code=foreign)
    assert (status, payload["error"]["code"]) == (400, "code_rejected")
    assert sync_of(client, who)["state"] == "not_activated"


def test_id_token_with_a_wrong_nonce_is_refused(client: FlaskClient, ca: TestCA, ms: Any) -> None:
    ms.id_token_nonce_override = "nonce-of-another-sign-in"
    who = login(client, ca.ca_path, mailbox=ALICE)
    status, payload = connect(client, ca, who)
    assert (status, payload["error"]["code"]) == (400, "nonce_mismatch")
    assert sync_of(client, who)["state"] == "not_activated"


def test_consent_without_offline_access_is_refused(client: FlaskClient, ca: TestCA, ms: Any) -> None:
    ms.issue_refresh_tokens = False
    who = login(client, ca.ca_path, mailbox=ALICE)
    status, payload = connect(client, ca, who)
    assert (status, payload["error"]["code"]) == (400, "offline_access_missing")
    assert sync_of(client, who)["state"] == "not_activated"


def test_declined_consent_says_so(client: FlaskClient, ca: TestCA, ms: Any) -> None:
    who = login(client, ca.ca_path, mailbox=ALICE)
    status, payload = connect(client, ca, who, action="deny")
    assert (status, payload["error"]["code"]) == (400, "consent_denied")
    assert "Accept" in payload["error"]["message"]


def test_admin_approval_required_says_what_to_ask_the_admin(client: FlaskClient, ca: TestCA, ms: Any) -> None:
    ms.tenant("tenant-contoso").user_consent_allowed = False
    who = login(client, ca.ca_path, mailbox=ALICE)
    status, payload = connect(client, ca, who)
    assert (status, payload["error"]["code"]) == (400, "admin_approval_required")
    message = payload["error"]["message"]
    assert "administrator" in message and ms.client_id in message and "Mail.Read" in message
    assert "/auth/microsoft/admin-consent" in message
    assert sync_of(client, who)["state"] == "not_activated"


def test_account_of_another_tenant_than_the_add_in_is_refused(
    app_config: dict[str, Any], redis_client: Any, ca: TestCA, fake_microsoft: RunningFake
) -> None:
    from backend import create_app
    from sandbox.https_client import HttpsClient

    ms = fake_microsoft.state
    ms.add_user(ALICE, tid="tenant-fabrikam")  # the same address, in another organisation
    application = create_app({**app_config, "REQUIRE_MAILBOX_PROOF": "on"})
    application.test_client_class = HttpsClient
    client = application.test_client()
    who = login(client, ca.ca_path, mailbox=ALICE, proof=ms.naa_token(ALICE, tid="tenant-contoso"))
    status, payload = connect(client, ca, who)
    assert (status, payload["error"]["code"]) == (400, "wrong_tenant")
    assert sync_of(client, who)["state"] == "not_activated"


def test_allowed_tenants_are_enforced(
    app_config: dict[str, Any], redis_client: Any, ca: TestCA, fake_microsoft: RunningFake
) -> None:
    from backend import create_app
    from sandbox.https_client import HttpsClient

    fake_microsoft.state.add_user(ALICE)
    application = create_app({**app_config, "MS_ALLOWED_TENANTS": "tenant-fabrikam"})
    application.test_client_class = HttpsClient
    client = application.test_client()
    who = login(client, ca.ca_path, mailbox=ALICE)
    assert connect(client, ca, who)[1]["error"]["code"] == "tenant_not_allowed"


@pytest.mark.parametrize("failure", ["deny", "mismatch", "nonce", "state"])
def test_an_earlier_working_connection_survives_a_failed_attempt(
    app: Flask, client: FlaskClient, ca: TestCA, ms: Any, failure: str
) -> None:
    who = login(client, ca.ca_path, mailbox=ALICE)
    assert connect(client, ca, who)[1]["status"] == "ok"
    with app.app_context():
        store = services().store
        before = (store.mailboxes.get(who.uid), store.secrets.get("mailbox", who.uid, "msal_cache"))
    ms.add_user("bob@acme.example", consented=True)
    if failure == "deny":
        payload = connect(client, ca, who, action="deny")[1]
    elif failure == "mismatch":
        payload = connect(client, ca, who, username="bob@acme.example")[1]
    elif failure == "nonce":
        ms.id_token_nonce_override = "forged"
        payload = connect(client, ca, who)[1]
    else:
        payload = _callback_with(client, who, ca, state="forged")[1]
    assert payload["status"] == "error"
    with app.app_context():
        store = services().store
        after = (store.mailboxes.get(who.uid), store.secrets.get("mailbox", who.uid, "msal_cache"))
    assert after[1] == before[1]
    assert after[0] is not None and before[0] is not None
    assert (after[0].state, after[0].provider, after[0].address, after[0].connection) == (
        before[0].state, before[0].provider, before[0].address, before[0].connection)


@pytest.mark.parametrize(("query", "code", "status"), [
    ("", "ticket_missing", 401),
    ("?ticket=forged", "ticket_invalid", 401),
])
def test_start_needs_a_ticket(client: FlaskClient, query: str, code: str, status: int) -> None:
    resp = client.get(f"/auth/microsoft/start{query}")
    assert resp.status_code == status
    assert dialog_payload(resp.get_data(as_text=True))["error"]["code"] == code


# --- admin consent --------------------------------------------------------------------------------


def admin_signed_in(client: FlaskClient, ca: TestCA, ms: Any, query: str = "?tenant=tenant-contoso") -> Any:
    """Start admin consent and sign in as the fake's auto user; returns our answer to that sign-in."""
    ms.authorize_mode = "approve"
    start = client.get(f"/auth/microsoft/admin-consent{query}")
    assert start.status_code == 302, start.get_data(as_text=True)
    assert "/oauth2/v2.0/authorize?" in start.headers["Location"]  # a sign-in first: it proves the tenant
    signed_in = requests.get(str(start.headers["Location"]), verify=ca.ca_path, timeout=10, allow_redirects=False)
    assert signed_in.status_code == 302, signed_in.text
    return client.get(local_path(str(signed_in.headers["Location"])))


def admin_consent(client: FlaskClient, ca: TestCA, ms: Any, query: str = "?tenant=tenant-contoso") -> tuple[str, str]:
    """Start admin consent (the sign-in, then consent); returns (the adminconsent URL, the redirect back to us)."""
    consent = admin_signed_in(client, ca, ms, query)
    assert consent.status_code == 302, consent.get_data(as_text=True)
    location = str(consent.headers["Location"])
    back = requests.get(location, verify=ca.ca_path, timeout=10, allow_redirects=False)
    assert back.status_code == 302, back.text
    return location, str(back.headers["Location"])


def test_admin_consent_is_recorded_for_the_tenant(
    app: Flask, client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake, fake_graph: RunningFake
) -> None:
    ms = fake_microsoft.state
    ms.add_user("admin@acme.example", is_admin=True)
    ms.auto_user = "admin@acme.example"
    location, back = admin_consent(client, ca, ms)
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert location.startswith(f"{fake_microsoft.url}/tenant-contoso/v2.0/adminconsent?")
    assert query["scope"] == f"{fake_graph.url}/.default" and query["client_id"] == ms.client_id
    assert query["redirect_uri"] == "https://localhost:3000/auth/microsoft/admin-consent/callback"
    resp = client.get(local_path(back))
    payload = dialog_payload(resp.get_data(as_text=True))
    assert payload == {"status": "ok", "provider": "microsoft", "tenant_id": "tenant-contoso", "admin_consent": True}
    assert ms.token_requests == ["authorization_code", "client_credentials"]  # the sign-in, then the proof
    with app.app_context():
        assert services().store.tenants.has_consent("tenant-contoso")
        assert services().store.tenants.all_ids() == ["tenant-contoso"]


def test_declined_admin_consent_records_nothing(app: Flask, client: FlaskClient, ca: TestCA,
                                                fake_microsoft: RunningFake) -> None:
    ms = fake_microsoft.state
    ms.add_user("admin@acme.example", is_admin=True)
    ms.auto_user = "admin@acme.example"
    ms.admin_consent_mode = "deny"
    payload = dialog_payload(admin_signed_in(client, ca, ms).get_data(as_text=True))
    assert payload["error"]["code"] == "admin_consent_denied"
    with app.app_context():
        assert services().store.tenants.all_ids() == []


def test_a_member_who_is_no_administrator_cannot_approve_the_tenant(
    app: Flask, client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake
) -> None:
    # Found in review: a sign-in only proved a tenant account; the consent prompt proves an administrator.
    ms = fake_microsoft.state
    ms.add_user("member@acme.example")
    ms.auto_user = "member@acme.example"
    ms.tenant("tenant-contoso").admin_consented = True  # its administrator consented earlier, for their org
    payload = dialog_payload(admin_signed_in(client, ca, ms).get_data(as_text=True))
    assert payload["error"]["code"] == "admin_consent_denied"
    assert ms.authorize_requests[-1]["prompt"] == "admin_consent"
    with app.app_context():
        assert services().store.tenants.all_ids() == []


def test_forged_admin_consent_answer_is_not_recorded(app: Flask, client: FlaskClient, ca: TestCA,
                                                     fake_microsoft: RunningFake) -> None:
    ms = fake_microsoft.state
    ms.add_user("admin@acme.example", is_admin=True)
    ms.auto_user = "admin@acme.example"
    _, back = admin_consent(client, ca, ms)
    # Keep our (valid) state but claim another tenant consented, one that did (for its own org).
    ms.tenant("tenant-victim").admin_consented = True
    params = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
    params["tenant"] = "tenant-victim"
    resp = client.get(f"/auth/microsoft/admin-consent/callback?{urlencode(params)}")
    assert dialog_payload(resp.get_data(as_text=True))["error"]["code"] == "wrong_tenant"
    with app.app_context():
        assert not services().store.tenants.has_consent("tenant-victim")


def test_admin_consent_refuses_a_bad_tenant(client: FlaskClient) -> None:
    resp = client.get("/auth/microsoft/admin-consent?tenant=../../evil")
    assert dialog_payload(resp.get_data(as_text=True))["error"]["code"] == "invalid_input"
