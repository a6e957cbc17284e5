"""``POST /api/sync/exchange`` through HTTP against the fake Exchange server (and its Autodiscover)."""

from __future__ import annotations

import base64
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from rq.job import Job

from backend.extensions import services
from sandbox.ews import start_fake_ews
from sandbox.harness.exchange import ADDRESS, PASSWORD, ExchangeHarness
from sandbox.login import LoggedIn, login
from sandbox.salesforce import FakeSalesforceState
from sandbox.tls import CertPair, TestCA
from tests.sfhelpers import redis_text

NEW_PASSWORD = "Brand-New-Password-7"
CONNECT_DEADLINE = 4


@pytest.fixture
def app_config(app_config: dict[str, Any], ews: ExchangeHarness) -> dict[str, Any]:
    """The app reaches the fake only through settings: loopback allowed, its CA trusted, Autodiscover URL."""
    return {**app_config, **ews.settings_overrides(), "EWS_ALLOWED_HOSTS": "127.0.0.1", "EWS_TIMEOUT_SECONDS": 2,
            "EWS_CONNECT_DEADLINE_SECONDS": CONNECT_DEADLINE}


@pytest.fixture
def alice(client: FlaskClient, ca: TestCA) -> LoggedIn:
    """Alice's task pane session (add-in mailbox alice@acme.example)."""
    return login(client, ca.ca_path, mailbox=ADDRESS)


def _post(client: FlaskClient, who: LoggedIn, body: Any) -> Any:
    return client.post("/api/sync/exchange", json=body, headers=who.headers)


def _error(resp: Any) -> tuple[int, str, str]:
    assert resp.is_json, resp.get_data(as_text=True)
    error = resp.json["error"]
    assert error["message"] and "Traceback" not in resp.get_data(as_text=True)
    return resp.status_code, error["code"], error["message"]


def _jobs(app: Flask, queue: str) -> list[Job]:
    with app.app_context():
        q = Queue(queue, connection=services().redis_raw)
        return [j for j in (q.fetch_job(i) for i in q.get_job_ids()) if j is not None]


def _stored_password(app: Flask, uid: str) -> str | None:
    with app.app_context():
        value: str | None = services().store.secrets.get("mailbox", uid, "exchange_password")
        return value


def test_connect_with_an_ews_url(client: FlaskClient, app: Flask, alice: LoggedIn, ews: ExchangeHarness) -> None:
    resp = _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.json
    assert body["state"] == "running" and body["provider"] == "exchange" and body["mailbox"] == ADDRESS
    assert body["connection"] == {"login": ADDRESS, "ews_url": ews.ews_url}
    assert ews.state.operations == ["ConvertId", "ResolveNames"]
    jobs = _jobs(app, "interactive")
    assert [(j.id, j.args) for j in jobs] == [(f"sync-{alice.uid}", (alice.uid,))]
    assert _stored_password(app, alice.uid) == PASSWORD
    assert client.get("/api/sync", headers=alice.headers).json["state"] == "running"


def test_connect_without_an_ews_url_uses_autodiscover(client: FlaskClient, app: Flask, alice: LoggedIn,
                                                      ews: ExchangeHarness) -> None:
    resp = _post(client, alice, {"login": ADDRESS, "password": PASSWORD})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.json["connection"]["ews_url"] == ews.ews_url
    assert ews.state.operations == ["Autodiscover", "ConvertId", "ResolveNames"]
    assert [j.id for j in _jobs(app, "interactive")] == [f"sync-{alice.uid}"]


def test_connect_with_a_domain_login_and_an_alias_mailbox(client: FlaskClient, ca: TestCA,
                                                          ews: ExchangeHarness) -> None:
    # The add-in runs in one of Alice's aliases, she signs in as ACME\alice: the same mailbox.
    who = login(client, ca.ca_path, mailbox="Alice.Example@acme.example")
    resp = _post(client, who, {"login": "ACME\\alice", "password": PASSWORD})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.json["mailbox"] == ADDRESS


def test_wrong_password(client: FlaskClient, app: Flask, alice: LoggedIn, ews: ExchangeHarness) -> None:
    status, code, message = _error(_post(client, alice, {"login": ADDRESS, "password": "nope",
                                                         "ews_url": ews.ews_url}))
    assert (status, code) == (422, "auth_failed") and "password" in message
    assert client.get("/api/sync", headers=alice.headers).json["state"] == "not_activated"
    assert _jobs(app, "interactive") == [] and _stored_password(app, alice.uid) is None


def test_a_mismatched_mailbox_answers_like_a_wrong_password(client: FlaskClient, app: Flask, alice: LoggedIn,
                                                            ews: ExchangeHarness) -> None:
    # Naming Bob's mailbox would make a right password for his login an oracle (issue 18).
    status, code, message = _error(_post(client, alice, {"login": "bob@acme.example", "password": "bob-password",
                                                         "ews_url": ews.ews_url}))
    assert (status, code) == (422, "auth_failed")
    assert "bob@acme.example" not in message and "password" in message
    assert _stored_password(app, alice.uid) is None and _jobs(app, "interactive") == []


@pytest.mark.parametrize("url", ["https://10.0.0.5/EWS/Exchange.asmx", "https://169.254.169.254/EWS/Exchange.asmx",
                                 "https://[::1]:9/EWS/Exchange.asmx", "https://2130706433/EWS/Exchange.asmx"])
def test_private_hosts_are_not_allowed(client: FlaskClient, alice: LoggedIn, ews: ExchangeHarness, url: str) -> None:
    status, code, message = _error(_post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": url}))
    assert (status, code) == (400, "host_not_allowed") and "not allowed" in message
    assert ews.request_count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": PASSWORD}, "login"),
        ({"login": "", "password": PASSWORD}, "login"),
        ({"login": ADDRESS}, "password"),
        ({"login": ADDRESS, "password": ""}, "password"),
        ({"login": ADDRESS, "password": 12345}, "password"),
        ({"login": "a" * 300 + "@acme.example", "password": PASSWORD}, "login"),
        ({"login": ADDRESS, "password": "p" * 300}, "password"),
        ({"login": "alice\n@acme.example", "password": PASSWORD}, "login"),
        ({"login": ADDRESS, "password": "pass\x00word"}, "password"),
        ({"login": "just a name", "password": PASSWORD}, "login"),
        ({"login": "ACME\\al\\ice", "password": PASSWORD}, "login"),
        ({"login": ADDRESS, "password": PASSWORD, "ews_url": "http://mail.acme.example/EWS/Exchange.asmx"},
         "ews_url"),
        ({"login": ADDRESS, "password": PASSWORD, "ews_url": "https://u:p@mail.acme.example/EWS/Exchange.asmx"},
         "ews_url"),
        ({"login": ADDRESS, "password": PASSWORD, "ews_url": "mail.acme.example"}, "ews_url"),
        ({"login": ADDRESS, "password": PASSWORD, "ews_url": "https://mail.acme.example:99999/"}, "ews_url"),
        ({"login": ADDRESS, "password": PASSWORD, "ews_url": "https://mail acme.example/"}, "ews_url"),
        ({"login": ADDRESS, "password": PASSWORD, "ews_url": "https://" + "a" * 2100 + ".example/"}, "ews_url"),
        ({"login": ADDRESS, "password": PASSWORD, "ews_url": ["https://mail.acme.example/"]}, "ews_url"),
    ],
)
def test_bad_input_is_refused_before_any_network_call(client: FlaskClient, alice: LoggedIn, ews: ExchangeHarness,
                                                      body: dict[str, Any], field: str) -> None:
    resp = _post(client, alice, body)
    status, code, _ = _error(resp)
    assert (status, code) == (400, "invalid_input") and resp.json["error"]["field"] == field
    assert ews.request_count() == 0


def test_non_https_url_message(client: FlaskClient, alice: LoggedIn) -> None:
    resp = _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": "http://mail.acme.example/"})
    assert _error(resp)[2] == "EWS URL must start with https://."


def test_not_a_json_object(client: FlaskClient, alice: LoggedIn) -> None:
    assert _error(_post(client, alice, ["login", "password"]))[:2] == (400, "invalid_input")
    resp = client.post("/api/sync/exchange", data="login=a", headers=alice.headers)
    assert _error(resp)[:2] == (415, "unsupported_media_type")


def test_needs_a_session(client: FlaskClient) -> None:
    resp = client.post("/api/sync/exchange", json={"login": ADDRESS, "password": PASSWORD})
    assert _error(resp)[:2] == (401, "unauthorized")


def test_attempts_are_rate_limited(client: FlaskClient, alice: LoggedIn, ews: ExchangeHarness) -> None:
    for _ in range(5):
        assert _error(_post(client, alice, {"login": ADDRESS, "password": "wrong", "ews_url": ews.ews_url}))[1] \
            == "auth_failed"
    before = ews.request_count()
    resp = _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url})
    status, code, message = _error(resp)
    assert (status, code) == (429, "rate_limited") and "try again in 15 minutes" in message
    assert 890 <= resp.json["error"]["retry_after"] <= 900 and resp.headers["Retry-After"]
    assert ews.request_count() == before  # no sixth try reached the server


def _second_user(client: FlaskClient, ca: TestCA, fake_salesforce: Any, name: str) -> LoggedIn:
    state: FakeSalesforceState = fake_salesforce.state
    state.add_user(f"{name}@acme.example", f"{name}-pw", email=f"{name}@acme.example", name=name.title())
    return login(client, ca.ca_path, mailbox=f"{name}@acme.example", username=f"{name}@acme.example",
                 password=f"{name}-pw")


def test_attempts_are_limited_per_user_and_target_login(client: FlaskClient, ca: TestCA, alice: LoggedIn,
                                                        ews: ExchangeHarness, fake_salesforce: Any) -> None:
    carol = _second_user(client, ca, fake_salesforce, "carol")
    assert carol.uid != alice.uid
    # Alice guesses Bob's password: five tries, however the login is written (an address or
    # DOMAIN\user, any case: one directory account).
    for target in ["BOB@acme.example", "bob@acme.example", "ACME\\bob", "ACME\\bob", "acme.example\\Bob"]:
        assert _error(_post(client, alice, {"login": target, "password": "guess", "ews_url": ews.ews_url}))[1] \
            == "auth_failed"
    before = ews.request_count()
    resp = _post(client, alice, {"login": "bob@acme.example", "password": "bob-password", "ews_url": ews.ews_url})
    status, code, message = _error(resp)
    assert (status, code) == (429, "rate_limited") and "for this login" in message
    assert 890 <= resp.json["error"]["retry_after"] <= 900
    assert ews.request_count() == before  # Bob's directory account saw no sixth try from Alice
    # The strict limit is per person (issue 18): Alice's guesses do not use up Carol's; a higher
    # ceiling per login across everyone bounds the total (tests/api/test_exchange_attacks.py).
    assert _error(_post(client, carol, {"login": "ACME\\bob", "password": "guess",
                                        "ews_url": ews.ews_url}))[1] == "auth_failed"
    # Other logins are counted on their own.
    assert _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url}).status_code == 200


@pytest.mark.parametrize(
    ("login", "account"),
    [("bob@acme.example", "acme\\bob"), ("BOB@Acme.Example", "acme\\bob"), ("ACME\\bob", "acme\\bob"),
     ("acme.example\\Bob", "acme\\bob"), ("bob@acme.co.uk", "acme\\bob")],
)
def test_forms_of_a_login_name_one_account(login: str, account: str) -> None:
    from backend.api.exchange import login_account

    assert login_account(login) == account


def test_a_success_clears_only_the_login_that_succeeded(client: FlaskClient, alice: LoggedIn,
                                                        ews: ExchangeHarness) -> None:
    # Four guesses at Bob's password, then a success with her own login: that must not reset Bob's count.
    for _ in range(4):
        _post(client, alice, {"login": "bob@acme.example", "password": "guess", "ews_url": ews.ews_url})
    assert _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url}).status_code == 200
    assert _error(_post(client, alice, {"login": "bob@acme.example", "password": "guess",
                                        "ews_url": ews.ews_url}))[1] == "auth_failed"  # the fifth
    before = ews.request_count()
    assert _error(_post(client, alice, {"login": "bob@acme.example", "password": "guess",
                                        "ews_url": ews.ews_url}))[:2] == (429, "rate_limited")
    assert ews.request_count() == before


def test_a_user_cannot_spread_attempts_over_many_logins(client: FlaskClient, alice: LoggedIn,
                                                        ews: ExchangeHarness) -> None:
    for n in range(10):
        assert _error(_post(client, alice, {"login": f"user{n}@acme.example", "password": "guess",
                                            "ews_url": ews.ews_url}))[1] == "auth_failed"
    before = ews.request_count()
    status, code, message = _error(_post(client, alice, {"login": "user10@acme.example", "password": "guess",
                                                         "ews_url": ews.ews_url}))
    assert (status, code) == (429, "rate_limited") and "for this login" not in message
    assert ews.request_count() == before


def test_a_success_resets_the_attempt_count(client: FlaskClient, alice: LoggedIn, ews: ExchangeHarness) -> None:
    for _ in range(4):
        _post(client, alice, {"login": ADDRESS, "password": "wrong", "ews_url": ews.ews_url})
    assert _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url}).status_code == 200
    for _ in range(4):
        assert _error(_post(client, alice, {"login": ADDRESS, "password": "wrong", "ews_url": ews.ews_url}))[1] \
            == "auth_failed"


@pytest.mark.parametrize("with_url", [True, False], ids=["ews-url", "autodiscover"])
def test_a_dripping_server_answers_timeout_within_the_deadline(client: FlaskClient, alice: LoggedIn,
                                                               ews: ExchangeHarness, with_url: bool) -> None:
    # Headers at once, then one byte a second: the 2 s read timeout never fires.
    # Without a URL the first request is the anonymous Autodiscover v2 GET, abandoned at its status.
    ews.inject_failure("drip", times=1 if with_url else 2, retry_after=1.0)
    body = {"login": ADDRESS, "password": PASSWORD, **({"ews_url": ews.ews_url} if with_url else {})}
    started = time.monotonic()
    status, code, message = _error(_post(client, alice, body))
    assert (status, code) == (504, "timeout") and "in time" in message
    assert time.monotonic() - started < CONNECT_DEADLINE + 1.5


def test_timeout(client: FlaskClient, alice: LoggedIn, ews: ExchangeHarness) -> None:
    ews.inject_failure("delay", times=3, retry_after=3)
    status, code, _ = _error(_post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url}))
    assert (status, code) == (504, "timeout")


def test_500_storm(client: FlaskClient, alice: LoggedIn, ews: ExchangeHarness) -> None:
    ews.inject_failure("500", times=50)
    status, code, _ = _error(_post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url}))
    assert (status, code) == (502, "ews_error")


def test_not_ews(client: FlaskClient, alice: LoggedIn, ews: ExchangeHarness) -> None:
    ews.inject_failure("not_ews", times=5)
    status, code, _ = _error(_post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url}))
    assert (status, code) == (502, "not_ews")


def test_unreachable_server_suggests_the_ews_url(client: FlaskClient, alice: LoggedIn, ews: ExchangeHarness,
                                                 server_cert: CertPair) -> None:
    ews.server.stop()
    try:
        status, code, message = _error(_post(client, alice, {"login": ADDRESS, "password": PASSWORD}))
        assert (status, code) == (502, "ews_unreachable") and "EWS URL" in message and "More" in message
    finally:
        ews.state, ews.server = start_fake_ews(server_cert)  # the harness stops this one at teardown


def test_expired_certificate(client: FlaskClient, alice: LoggedIn, ca: TestCA) -> None:
    expired = ca.issue("api-expired", not_before=datetime.now(UTC) - timedelta(days=10), days=1)
    state, server = start_fake_ews(expired)
    try:
        state.add_user(ADDRESS, PASSWORD, account="alice")
        resp = _post(client, alice, {"login": ADDRESS, "password": PASSWORD,
                                     "ews_url": f"{server.url}/EWS/Exchange.asmx"})
        status, code, message = _error(resp)
        assert (status, code) == (502, "tls_error") and "certificate" in message
        assert server.recorder.calls == []
    finally:
        server.stop()


def test_a_failed_attempt_leaves_the_working_connection(client: FlaskClient, app: Flask, alice: LoggedIn,
                                                        ews: ExchangeHarness) -> None:
    assert _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url}).status_code == 200
    before = client.get("/api/sync", headers=alice.headers).json
    for body in ({"login": ADDRESS, "password": "wrong", "ews_url": ews.ews_url},
                 {"login": "bob@acme.example", "password": "bob-password", "ews_url": ews.ews_url},
                 {"login": ADDRESS, "password": PASSWORD, "ews_url": "https://10.1.1.1/EWS/Exchange.asmx"}):
        assert _post(client, alice, body).status_code in (400, 422)
    after = client.get("/api/sync", headers=alice.headers).json
    assert after["state"] == "running" and after["connection"] == before["connection"]
    assert after["activated_at"] == before["activated_at"]
    assert _stored_password(app, alice.uid) == PASSWORD


def test_reconnect_with_a_new_password_keeps_the_cursors(client: FlaskClient, app: Flask, alice: LoggedIn,
                                                         ews: ExchangeHarness) -> None:
    assert _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url}).status_code == 200
    with app.app_context():
        assert services().store.mailboxes.save_cursors_if_connected(alice.uid, {"inbox": "ews1|1|2|state-inbox"})
    ews.state.revoke(ADDRESS, NEW_PASSWORD)
    resp = _post(client, alice, {"login": ADDRESS, "password": NEW_PASSWORD, "ews_url": ews.ews_url})
    assert resp.status_code == 200 and resp.json["state"] == "running"
    with app.app_context():
        assert services().store.mailboxes.cursors(alice.uid) == {"inbox": "ews1|1|2|state-inbox"}
    assert _stored_password(app, alice.uid) == NEW_PASSWORD


def test_the_password_is_never_in_redis_logs_or_jobs(client: FlaskClient, app: Flask, alice: LoggedIn,
                                                      ews: ExchangeHarness, redis_url: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ews.state.auth_methods = ("Basic",)  # the password itself goes over the wire
    assert _post(client, alice, {"login": ADDRESS, "password": "Wrong-" + PASSWORD,
                                 "ews_url": ews.ews_url}).status_code == 422
    # Basic is never used during Autodiscover (issue 18): the typed URL is where it goes.
    assert _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url}).status_code == 200
    ews.state.revoke(ADDRESS, NEW_PASSWORD)
    ews.state.auth_methods = ("NTLM",)
    assert _post(client, alice, {"login": ADDRESS, "password": NEW_PASSWORD,
                                 "ews_url": ews.ews_url}).status_code == 200

    dump = redis_text(redis.Redis.from_url(redis_url))
    assert dump  # the scan saw the store and the queue
    # The password itself, Basic's base64 of login:password, and every credential blob (Basic
    # values, NTLM negotiate/authenticate messages) the server received.
    secrets = {PASSWORD, NEW_PASSWORD, "Wrong-" + PASSWORD}
    secrets |= {base64.b64encode(f"{ADDRESS}:{p}".encode()).decode() for p in list(secrets)}
    blobs = {c.headers["Authorization"].split(" ", 1)[1] for c in ews.server.recorder.calls
             if " " in c.headers.get("Authorization", "")}
    assert {c.headers["Authorization"].split(" ")[0] for c in ews.server.recorder.calls
            if "Authorization" in c.headers} == {"Basic", "NTLM"}
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret in secrets | blobs:
        assert secret not in dump
        assert secret not in logged
        for job in _jobs(app, "interactive"):
            assert secret not in repr(job.args) + repr(job.kwargs) + (job.description or "")
    assert any(r.name.startswith("backend") for r in caplog.records)
