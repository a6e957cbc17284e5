"""The Salesforce sign-in dialog: state and PKCE enforced, login hosts checked, tokens kept secret."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from sandbox.login import (
    PANE_CHALLENGE,
    PANE_VERIFIER,
    dialog_payload,
    fake_authorize,
    local_path,
    login,
    salesforce_dialog_code,
)
from sandbox.tls import TestCA
from tests.conftest import RunningFake


def _start(client: FlaskClient, query: str = "") -> tuple[str, dict[str, list[str]]]:
    resp = client.get(f"/auth/salesforce/start?pane_challenge={PANE_CHALLENGE}" + (f"&{query}" if query else ""))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    location = resp.headers["Location"]
    return location, parse_qs(urlsplit(location).query)


def _error_of(resp: Any) -> dict[str, Any]:
    payload = dialog_payload(resp.get_data(as_text=True))
    assert payload["status"] == "error"
    error: dict[str, Any] = payload["error"]
    return error


def test_start_sends_state_and_pkce_s256(client: FlaskClient, fake_salesforce: RunningFake) -> None:
    location, query = _start(client)
    assert location.startswith(f"{fake_salesforce.url}/services/oauth2/authorize?")
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["state"][0]
    assert query["redirect_uri"] == ["https://localhost:3000/auth/salesforce/callback"]
    assert query["client_id"] == [fake_salesforce.state.client_id]


def test_token_request_carries_the_verifier_of_the_challenge(
    client: FlaskClient, fake_salesforce: RunningFake, ca: TestCA, redis_client: redis.Redis
) -> None:
    location, query = _start(client)
    while_signing_in = _every_value(redis_client)
    callback = fake_authorize(location, ca.ca_path, "alice@acme.example", "alice-pw")
    assert client.get(local_path(callback)).status_code == 200
    token_calls = fake_salesforce.calls.matching("POST", "/services/oauth2/token")
    assert len(token_calls) == 1
    form = parse_qs(token_calls[0].body.decode())
    verifier = form["code_verifier"][0]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert digest == query["code_challenge"][0]
    assert form["grant_type"] == ["authorization_code"]
    assert verifier not in while_signing_in  # the dialog's session holds it sealed


def test_callback_without_state_is_refused(client: FlaskClient) -> None:
    resp = client.get("/auth/salesforce/callback?code=abc")
    assert resp.status_code == 400
    assert _error_of(resp)["code"] == "state_missing"


@pytest.mark.parametrize("state", ["tampered", "eyJuIjoieCJ9.AAAA.BBBB", "x" * 5000])
def test_callback_with_wrong_state_is_refused(client: FlaskClient, state: str) -> None:
    _start(client)
    resp = client.get(f"/auth/salesforce/callback?code=abc&state={state}")
    assert resp.status_code == 400
    assert _error_of(resp)["code"] == "state_invalid"
    assert "Start the sign-in again" in resp.get_data(as_text=True)


def test_state_from_another_dialog_is_refused(app: Flask, ca: TestCA) -> None:
    first, other = app.test_client(), app.test_client()
    location, _ = _start(first)
    callback = fake_authorize(location, ca.ca_path, "alice@acme.example", "alice-pw")
    resp = other.get(local_path(callback))
    assert resp.status_code == 400
    assert _error_of(resp)["code"] == "state_mismatch"


def test_code_with_another_dialogs_verifier_is_refused(app: Flask, ca: TestCA) -> None:
    """PKCE: a code delivered to a flow that did not ask for it cannot be redeemed."""
    victim, attacker = app.test_client(), app.test_client()
    victim_location, _ = _start(victim)
    victim_callback = fake_authorize(victim_location, ca.ca_path, "alice@acme.example", "alice-pw")
    stolen_code = parse_qs(urlsplit(victim_callback).query)["code"][0]
    _, attacker_query = _start(attacker)
    resp = attacker.get(f"/auth/salesforce/callback?code={stolen_code}&state={attacker_query['state'][0]}")
    assert resp.status_code == 400
    assert _error_of(resp)["code"] == "salesforce_refused"


def test_denied_consent_ends_the_dialog_with_the_reason(client: FlaskClient, ca: TestCA) -> None:
    location, _ = _start(client)
    callback = fake_authorize(location, ca.ca_path, "alice@acme.example", "alice-pw", action="deny")
    resp = client.get(local_path(callback))
    error = _error_of(resp)
    assert error["code"] == "salesforce_denied"
    assert "declined" in error["message"]


@pytest.mark.parametrize(
    ("query", "expected_host"),
    [
        ("env=mydomain&domain=acme", "acme.my.salesforce.com"),
        ("env=mydomain&domain=https://acme--uat.sandbox.my.salesforce.com", "acme--uat.sandbox.my.salesforce.com"),
        ("env=mydomain&domain=Acme.My.Salesforce.com", "acme.my.salesforce.com"),
        ("env=mydomain&domain=acme.develop.my.salesforce.com", "acme.develop.my.salesforce.com"),
        # A pasted Lightning address names the same My Domain.
        ("env=mydomain&domain=acme.lightning.force.com", "acme.my.salesforce.com"),
        ("env=mydomain&domain=acme--uat.sandbox.lightning.force.com", "acme--uat.sandbox.my.salesforce.com"),
    ],
)
def test_my_domain_is_used_when_it_is_salesforces(client: FlaskClient, query: str, expected_host: str) -> None:
    location, _ = _start(client, query)
    assert urlsplit(location).netloc == expected_host


@pytest.mark.parametrize(
    "query",
    [
        "env=mydomain&domain=evil.example.com",
        "env=mydomain&domain=http://acme.my.salesforce.com",
        "env=mydomain&domain=acme.my.salesforce.com.evil.com",
        "env=mydomain&domain=https://user:pw@acme.my.salesforce.com",
        "env=mydomain&domain=acme.my.salesforce.com:8443",
        "env=mydomain&domain=",
        "env=elsewhere",
        # Suffix tricks: the real host of each is attacker.example.
        "env=mydomain&domain=attacker.example/x.salesforce.com",
        "env=mydomain&domain=attacker.example%3F.salesforce.com",
        "env=mydomain&domain=attacker.example%23.my.salesforce.com",
        "env=mydomain&domain=attacker.example%5C.salesforce.com",
        "env=mydomain&domain=attacker.example@acme.my.salesforce.com",
        "env=mydomain&domain=acme.my.salesforce.com@attacker.example",
        "env=mydomain&domain=https://attacker.example/.my.salesforce.com",
        "env=mydomain&domain=https://acme.my.salesforce.com/path",
        "env=mydomain&domain=acme%20.my.salesforce.com",
        "env=mydomain&domain=acme.my.salesforce.com%2F..%2Fattacker.example",
        "env=mydomain&domain=-acme.my.salesforce.com",
        "env=mydomain&domain=xsalesforce.com",
        # Issue 18: hosts under a Salesforce-owned domain that anyone can get (Sites, Experience Cloud).
        "env=mydomain&domain=attacker-site.force.com",
        "env=mydomain&domain=attacker.my.site.com",
        "env=mydomain&domain=attacker.cloudforce.com",
        "env=mydomain&domain=attacker.database.com",
        "env=mydomain&domain=attacker.salesforce.com",
        "env=mydomain&domain=attacker.salesforce-setup.com",
        "env=mydomain&domain=my.salesforce.com",
    ],
)
def test_other_login_hosts_are_refused(client: FlaskClient, query: str) -> None:
    resp = client.get(f"/auth/salesforce/start?pane_challenge={PANE_CHALLENGE}&{query}")
    assert resp.status_code == 400
    assert _error_of(resp)["code"] == "login_host_refused"


def test_sandbox_uses_the_sandbox_login_host(app_config: dict[str, Any], redis_client: redis.Redis) -> None:
    from backend import create_app
    from sandbox.https_client import HttpsClient

    application = create_app({**app_config, "SALESFORCE_SANDBOX_URL": "https://test.salesforce.com"})
    application.test_client_class = HttpsClient
    location, _ = _start(application.test_client(), "env=sandbox")
    assert location.startswith("https://test.salesforce.com/services/oauth2/authorize?")


def test_the_dialog_page_has_no_inline_script(client: FlaskClient, ca: TestCA) -> None:
    location, _ = _start(client)
    callback = fake_authorize(location, ca.ca_path, "alice@acme.example", "alice-pw")
    page = client.get(local_path(callback)).get_data(as_text=True)
    import re

    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert "onload" not in page and "javascript:" not in page


def _every_value(client: redis.Redis) -> str:
    """Every key and value in the database as text (hashes, lists, sets and binary values included)."""
    raw = redis.Redis(connection_pool=redis.ConnectionPool(**{
        **client.connection_pool.connection_kwargs, "decode_responses": False}))
    parts: list[bytes] = []
    for key in raw.scan_iter(count=1000):
        parts.append(key)
        kind = raw.type(key)
        if kind == b"string":
            parts.append(raw.get(key) or b"")
        elif kind == b"hash":
            parts.extend(k + b"=" + v for k, v in raw.hgetall(key).items())
        elif kind == b"list":
            parts.extend(raw.lrange(key, 0, -1))
        elif kind == b"set":
            parts.extend(raw.smembers(key))
        elif kind == b"zset":
            parts.extend(m for m, _ in raw.zrange(key, 0, -1, withscores=True))
    return b"\n".join(parts).decode("utf-8", "replace")


def test_tokens_are_not_readable_anywhere_in_redis(
    client: FlaskClient, ca: TestCA, fake_salesforce: RunningFake, redis_client: redis.Redis
) -> None:
    login(client, ca.ca_path)
    refresh_tokens = list(fake_salesforce.state.refresh_tokens)
    access_tokens = list(fake_salesforce.state.access_tokens)
    assert refresh_tokens and access_tokens
    everything = _every_value(redis_client)
    assert "sstest:secret:user:" in everything  # the encrypted copies exist ...
    for token in refresh_tokens + access_tokens:
        assert token not in everything  # ... and the tokens are nowhere in clear


def test_login_seeds_sync_settings(client: FlaskClient, ca: TestCA) -> None:
    who = login(client, ca.ca_path)
    sync = client.get("/api/sync", headers=who.headers).json
    assert sync is not None
    assert sync["state"] == "not_activated"
    assert sync["settings"]["sync_emails"] is True


def test_expired_access_token_is_refreshed(
    client: FlaskClient, ca: TestCA, fake_salesforce: RunningFake, redis_client: redis.Redis
) -> None:
    who = login(client, ca.ca_path)
    fake_salesforce.state.expire_access_tokens()
    redis_client.delete(*redis_client.keys("sstest:once:salesforce-check:*"))
    resp = client.get("/api/me", headers=who.headers)
    assert resp.status_code == 200
    assert fake_salesforce.state.token_requests == ["authorization_code", "refresh_token"]


def test_revoked_refresh_token_sends_the_user_back_to_login_with_the_reason(
    client: FlaskClient, ca: TestCA, fake_salesforce: RunningFake, redis_client: redis.Redis
) -> None:
    who = login(client, ca.ca_path)
    fake_salesforce.state.revoke_refresh_tokens()
    redis_client.delete(*redis_client.keys("sstest:once:salesforce-check:*"))
    resp = client.get("/api/me", headers=who.headers)
    assert resp.status_code == 401
    assert resp.json is not None
    assert resp.json["error"]["code"] == "salesforce_revoked"
    assert "Log in to Salesforce again" in resp.json["error"]["message"]
    # The pane's token no longer works, and logging in again restores everything.
    assert client.get("/api/sync", headers=who.headers).status_code == 401
    again = login(client, ca.ca_path)
    assert client.get("/api/me", headers=again.headers).json["salesforce"]["status"] == "connected"  # type: ignore[index]


def test_switch_account_dialog_forces_the_login_prompt(client: FlaskClient, ca: TestCA) -> None:
    who = login(client, ca.ca_path)
    url = client.post("/api/dialog", json={"provider": "salesforce", "pane_challenge": PANE_CHALLENGE},
                      headers=who.headers).json["url"]  # type: ignore[index]
    assert url.startswith("https://localhost:3000/auth/salesforce/start?ticket=")
    first = client.get(local_path(url))
    assert first.status_code == 302
    assert parse_qs(urlsplit(first.headers["Location"]).query)["prompt"] == ["login consent"]
    # The ticket is single-use.
    second = client.get(local_path(url))
    assert second.status_code == 401
    assert _error_of(second)["code"] == "ticket_used"


@pytest.mark.parametrize(
    ("body", "query"),
    [
        ({}, "&env=production"),
        ({"env": "sandbox"}, "&env=sandbox"),
        ({"env": "mydomain", "domain": "acme.my.salesforce.com"}, "&env=mydomain&domain=acme.my.salesforce.com"),
        ({"env": "mydomain", "domain": "a&b=c"}, "&env=mydomain&domain=a%26b%3Dc"),  # passed on, never spliced
    ],
)
def test_switch_account_dialog_takes_the_chosen_environment(client: FlaskClient, ca: TestCA, body: dict[str, Any],
                                                            query: str) -> None:
    who = login(client, ca.ca_path)
    resp = client.post("/api/dialog", json={"provider": "salesforce", **body}, headers=who.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.json["url"].endswith(query)  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"env": "staging"}, "env"), ({"env": "mydomain"}, "domain"), ({"env": "mydomain", "domain": "x" * 300}, "domain"),
     ({"env": "sandbox", "domain": 42}, "domain")],
)
def test_switch_account_dialog_refuses_a_bad_environment(client: FlaskClient, ca: TestCA, body: dict[str, Any],
                                                         field: str) -> None:
    who = login(client, ca.ca_path)
    resp = client.post("/api/dialog", json={"provider": "salesforce", **body}, headers=who.headers)
    assert resp.status_code == 400
    assert resp.json["error"]["code"] == "invalid_input" and resp.json["error"]["field"] == field  # type: ignore[index]


def test_a_second_login_reuses_the_same_user(client: FlaskClient, ca: TestCA) -> None:
    first = login(client, ca.ca_path)
    second = login(client, ca.ca_path)
    assert first.uid == second.uid and first.token != second.token


def test_dialog_code_is_issued_only_through_the_callback(client: FlaskClient, ca: TestCA) -> None:
    code = salesforce_dialog_code(client, ca.ca_path)
    assert client.post("/api/session", json={"code": code, "verifier": PANE_VERIFIER,
                                              "mailbox": "alice@acme.example"}).status_code == 201
    resp = client.post("/api/session", json={"code": code, "verifier": PANE_VERIFIER,
                                              "mailbox": "alice@acme.example"})
    assert resp.status_code == 400
    assert resp.json is not None and resp.json["error"]["code"] == "invalid_code"


def test_an_instance_url_outside_salesforce_is_refused(
    client: FlaskClient, ca: TestCA, fake_salesforce: RunningFake, redis_client: redis.Redis
) -> None:
    """The token endpoint's instance_url receives the access token: it must be a Salesforce host."""
    location, _ = _start(client)
    callback = fake_authorize(location, ca.ca_path, "alice@acme.example", "alice-pw")
    fake_salesforce.state.base_url = "https://attacker.example"
    resp = client.get(local_path(callback))
    assert resp.status_code == 400
    assert _error_of(resp)["code"] == "salesforce_refused"
    assert not redis_client.keys("sstest:user:*")


def test_a_refused_app_secret_is_the_servers_problem_not_the_users(
    client: FlaskClient, ca: TestCA, fake_salesforce: RunningFake, redis_client: redis.Redis
) -> None:
    """An expired connected-app secret must not log anyone out or count against their sync."""
    who = login(client, ca.ca_path)
    fake_salesforce.state.client_secret = "rotated-on-the-salesforce-side"
    fake_salesforce.state.expire_access_tokens()
    redis_client.delete(*redis_client.keys("sstest:once:salesforce-check:*"))
    resp = client.get("/api/me", headers=who.headers)
    assert resp.status_code == 200
    assert resp.json is not None and resp.json["salesforce"]["status"] == "connected"
    location, _ = _start(client)
    callback = fake_authorize(location, ca.ca_path, "alice@acme.example", "alice-pw")
    done = client.get(local_path(callback))
    assert done.status_code == 503 and _error_of(done)["code"] == "salesforce_misconfigured"
