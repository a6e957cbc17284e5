"""Issue 18, item 1: ``POST /api/sync/exchange`` as an attacker uses it (lockouts, password oracle).

Each test replays an attack from the adversarial review against the fake Exchange server.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.extensions import services
from sandbox.harness.exchange import ADDRESS, PASSWORD, ExchangeHarness
from sandbox.login import LoggedIn, login
from sandbox.salesforce import FakeSalesforceState
from sandbox.tls import TestCA


@pytest.fixture
def app_config(app_config: dict[str, Any], ews: ExchangeHarness) -> dict[str, Any]:
    """The app reaches the fake only through settings: loopback allowed, its CA trusted."""
    return {**app_config, **ews.settings_overrides(), "EWS_ALLOWED_HOSTS": "127.0.0.1", "EWS_TIMEOUT_SECONDS": 2}


@pytest.fixture
def alice(client: FlaskClient, ca: TestCA) -> LoggedIn:
    """Alice's task pane session (add-in mailbox alice@acme.example)."""
    return login(client, ca.ca_path, mailbox=ADDRESS)


def _person(client: FlaskClient, ca: TestCA, fake_salesforce: Any, address: str,
            org_id: str = "00D000000000001AAA") -> LoggedIn:
    state: FakeSalesforceState = fake_salesforce.state
    state.add_user(address, "sf-pw", email=address, org_id=org_id)
    return login(client, ca.ca_path, mailbox=address, username=address, password="sf-pw")


def _post(client: FlaskClient, who: LoggedIn, body: Any) -> Any:
    return client.post("/api/sync/exchange", json=body, headers=who.headers)


def _code(resp: Any) -> str:
    return str(resp.json["error"]["code"]) if resp.status_code >= 400 else "ok"


def test_refused_hosts_do_not_lock_out_the_victim(client: FlaskClient, ca: TestCA, alice: LoggedIn,
                                                  ews: ExchangeHarness, fake_salesforce: Any) -> None:
    dave = _person(client, ca, fake_salesforce, "dave@acme.example")
    for who in (dave, dave, dave, alice, alice, dave):
        resp = _post(client, who, {"login": ADDRESS, "password": "guess", "ews_url": "https://10.0.0.5/EWS/x"})
        assert _code(resp) == "host_not_allowed"
    assert ews.request_count() == 0
    # None of those reached Exchange, so none counted: Alice connects with her password.
    resp = _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url})
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_a_right_password_for_another_mailbox_answers_like_a_wrong_one(client: FlaskClient, ca: TestCA,
                                                                       alice: LoggedIn, ews: ExchangeHarness,
                                                                       fake_salesforce: Any) -> None:
    dave = _person(client, ca, fake_salesforce, "dave@acme.example")
    wrong = _post(client, dave, {"login": ADDRESS, "password": "guess", "ews_url": ews.ews_url})
    right = _post(client, dave, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url})
    assert (wrong.status_code, wrong.json) == (right.status_code, right.json)
    assert right.json["error"]["code"] == "auth_failed" and ADDRESS not in right.get_data(as_text=True)


def test_an_email_login_outside_the_callers_domain_is_refused(client: FlaskClient, ca: TestCA, alice: LoggedIn,
                                                              ews: ExchangeHarness, fake_salesforce: Any) -> None:
    mallory = _person(client, ca, fake_salesforce, "mallory@other.example", org_id="00D000000000002AAA")
    for _ in range(6):
        resp = _post(client, mallory, {"login": ADDRESS, "password": "guess", "ews_url": ews.ews_url})
        assert resp.status_code == 400 and resp.json["error"]["code"] == "login_not_allowed"
        assert resp.json["error"]["field"] == "login"
    assert ews.request_count() == 0
    assert _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url}).status_code == 200


def test_the_strict_limit_is_per_person_and_login(client: FlaskClient, ca: TestCA, alice: LoggedIn,
                                                  ews: ExchangeHarness, fake_salesforce: Any) -> None:
    dave = _person(client, ca, fake_salesforce, "dave@acme.example")
    for _ in range(5):
        assert _code(_post(client, dave, {"login": ADDRESS, "password": "guess", "ews_url": ews.ews_url})) \
            == "auth_failed"
    before = ews.request_count()
    assert _code(_post(client, dave, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url})) \
        == "rate_limited"
    assert ews.request_count() == before
    # Dave's guesses do not lock Alice out of her own login.
    resp = _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url})
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_a_global_ceiling_per_login_spares_its_owner(client: FlaskClient, ca: TestCA, alice: LoggedIn,
                                                     ews: ExchangeHarness, fake_salesforce: Any,
                                                     monkeypatch: pytest.MonkeyPatch, app: Flask) -> None:
    from backend.api import exchange

    monkeypatch.setattr(exchange, "CONNECT_ATTEMPTS_PER_LOGIN_GLOBAL", 4)
    people = [_person(client, ca, fake_salesforce, f"p{n}@acme.example") for n in range(3)]
    for who in people[:2]:
        for _ in range(2):
            assert _code(_post(client, who, {"login": ADDRESS, "password": "guess", "ews_url": ews.ews_url})) \
                == "auth_failed"
    before = ews.request_count()
    resp = _post(client, people[2], {"login": ADDRESS, "password": "guess", "ews_url": ews.ews_url})
    assert _code(resp) == "rate_limited" and "for this login" in resp.json["error"]["message"]
    assert ews.request_count() == before
    # The login is Alice's own verified add-in address: the ceiling others filled does not stop her.
    with app.app_context():
        services().store.users.update(alice.uid, addin_mailbox_verified=True)
    resp = _post(client, alice, {"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url})
    assert resp.status_code == 200, resp.get_data(as_text=True)
