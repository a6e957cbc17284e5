"""Sync started right after the Salesforce login, on-behalf-of the pane's Nested App Authentication token."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from backend.extensions import QUEUE_INTERACTIVE, services
from backend.jobs.sync import job_id_for
from sandbox.login import LoggedIn, dialog_payload, local_path, login
from sandbox.tls import TestCA
from tests.conftest import RunningFake

ALICE = "alice@acme.example"
OBO = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@pytest.fixture
def app_config(app_config: dict[str, Any], fake_graph: RunningFake) -> dict[str, Any]:
    """Production-like: the add-in mailbox must be proven; Graph is the fake."""
    return {**app_config, "GRAPH_URL": fake_graph.url, "REQUIRE_MAILBOX_PROOF": "on"}


def sync_of(client: FlaskClient, who: LoggedIn) -> dict[str, Any]:
    """GET /api/sync."""
    resp = client.get("/api/sync", headers=who.headers)
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json  # type: ignore[assignment]
    return body


def test_consent_given_earlier_starts_sync_with_the_salesforce_login_alone(
    app: Flask, client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake, fake_graph: RunningFake
) -> None:
    ms = fake_microsoft.state
    ms.add_user(ALICE, aliases=["sales@acme.example"], consented=True)
    proof = ms.naa_token(ALICE)
    who = login(client, ca.ca_path, mailbox=ALICE, proof=proof)

    view = sync_of(client, who)
    assert (view["state"], view["provider"], view["mailbox"]) == ("running", "microsoft", ALICE)
    assert view["connection"]["tenant_id"] == "tenant-contoso"
    assert ms.token_requests.count(OBO) == 1
    obo = [c for c in fake_microsoft.calls.matching("POST") if c.path == "/tenant-contoso/oauth2/v2.0/token"]
    form = parse_qs(obo[-1].body.decode())
    assert form["assertion"] == [proof] and form["requested_token_use"] == ["on_behalf_of"]
    assert {"Mail.Read", "Calendars.Read", "Contacts.Read", "User.Read"} <= set(form["scope"][0].split())
    assert len(fake_graph.calls.matching("GET", "/v1.0/me")) == 1
    with app.app_context():
        svc = services()
        assert job_id_for(who.uid) in svc.queue(QUEUE_INTERACTIVE).get_job_ids()
        assert svc.store.secrets.get("mailbox", who.uid, "msal_cache")
        mailbox = svc.store.mailboxes.get(who.uid)
        assert mailbox is not None and mailbox.connection["via"] == "on_behalf_of"
        assert mailbox.aliases == ["sales@acme.example"]


def test_without_consent_sync_waits_and_the_pane_is_pointed_to_microsoft(
    client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake
) -> None:
    ms = fake_microsoft.state
    ms.add_user(ALICE)  # never consented
    who = login(client, ca.ca_path, mailbox=ALICE, proof=ms.naa_token(ALICE))
    view = sync_of(client, who)
    assert view["state"] == "not_activated" and view["provider"] is None
    assert view["suggested_provider"] == "microsoft"
    assert ms.token_requests.count(OBO) == 1

    # The consent button then works, and the next login needs nothing more.
    url = client.post("/api/dialog", json={"provider": "microsoft"}, headers=who.headers).json["url"]  # type: ignore[index]
    ms.authorize_mode, ms.auto_user = "approve", ALICE
    start = client.get(local_path(url))
    answer = requests.get(start.headers["Location"], verify=ca.ca_path, timeout=10, allow_redirects=False)
    done = client.get(local_path(answer.headers["Location"]))
    assert dialog_payload(done.get_data(as_text=True))["status"] == "ok"
    assert sync_of(client, who)["state"] == "running"


def test_a_login_without_naa_proof_suggests_nothing(
    app_config: dict[str, Any], redis_client: Any, ca: TestCA, fake_microsoft: RunningFake
) -> None:
    from backend import create_app
    from sandbox.https_client import HttpsClient

    application = create_app({**app_config, "REQUIRE_MAILBOX_PROOF": "off"})
    application.test_client_class = HttpsClient
    client = application.test_client()
    who = login(client, ca.ca_path, mailbox=ALICE)
    assert sync_of(client, who)["suggested_provider"] is None
    assert OBO not in fake_microsoft.state.token_requests


def test_an_activated_mailbox_is_left_alone(client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake) -> None:
    ms = fake_microsoft.state
    ms.add_user(ALICE, consented=True)
    who = login(client, ca.ca_path, mailbox=ALICE, proof=ms.naa_token(ALICE))
    assert client.post("/api/sync/deactivate", headers=who.headers).status_code == 200
    again = login(client, ca.ca_path, mailbox=ALICE, proof=ms.naa_token(ALICE))
    # Deactivated by the person: a new login does not switch sync back on.
    assert sync_of(client, again)["state"] == "deactivated"
    assert ms.token_requests.count(OBO) == 1


def test_graph_failure_leaves_the_login_working_and_sync_off(
    client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake, fake_graph: RunningFake
) -> None:
    ms = fake_microsoft.state
    ms.add_user(ALICE, consented=True)
    fake_graph.state.inject("500", None)
    who = login(client, ca.ca_path, mailbox=ALICE, proof=ms.naa_token(ALICE))
    assert sync_of(client, who)["state"] == "not_activated"


def app_only_tenant(app: Flask, ms: Any) -> Any:
    """Alice in a tenant whose admin consented (recorded here too): the app registration has application
    permissions only, so OBO is refused and app-only works."""
    user = ms.add_user(ALICE)
    tenant = ms.tenant(user.tid)
    tenant.admin_consented, tenant.admin_consent_covers_delegated = True, False
    with app.app_context():
        services().store.tenants.record_consent(user.tid, "https://graph/.default")
    return user


def test_a_tenant_connected_to_another_org_is_not_read_app_only_for_this_one(
    app: Flask, client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake, fake_graph: RunningFake
) -> None:
    ms = fake_microsoft.state
    user = app_only_tenant(app, ms)
    with app.app_context():
        store = services().store
        store.redis.set(store.keys("mstenant-org", user.tid), "00DANOTHERORG00")  # its admin connected it there
    who = login(client, ca.ca_path, mailbox=ALICE, proof=ms.naa_token(ALICE))
    assert sync_of(client, who)["state"] == "not_activated"
    assert "client_credentials" not in ms.token_requests


def test_tenant_admin_consent_activates_app_only(
    app: Flask, client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake, fake_graph: RunningFake
) -> None:
    ms = fake_microsoft.state
    user = app_only_tenant(app, ms)
    who = login(client, ca.ca_path, mailbox=ALICE, proof=ms.naa_token(ALICE))
    view = sync_of(client, who)
    assert (view["state"], view["provider"], view["mailbox"]) == ("running", "microsoft", ALICE)
    assert ms.token_requests == [OBO, "client_credentials"]
    assert len(fake_graph.calls.matching("GET", f"/v1.0/users/{user.oid}")) == 1
    with app.app_context():
        mailbox = services().store.mailboxes.get(who.uid)
        assert mailbox is not None
        assert mailbox.connection == {"app_only": True, "tenant_id": user.tid, "user_id": user.oid,
                                      "via": "admin_consent"}
        assert services().store.secrets.get("mailbox", who.uid, "msal_cache") is None
