"""The org's connected access against a person's own app-only sync in the same tenant.

People of an org that never connected Microsoft 365 in the console may sync app-only after their own
sign-in (their tenant's recorded consent): one person's refused run is theirs, not a breakage of an
org connection that does not exist. And once an org disconnects its tenant, that consent is gone too.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.errors import AuthRevoked
from backend.extensions import services
from backend.jobs.failures import org_access_failed
from backend.store.mailboxes import SyncState
from backend.sync.org_access import disconnect_org
from sandbox.login import login
from sandbox.tls import TestCA
from tests.auth.test_obo import ALICE, app_only_tenant, sync_of
from tests.conftest import RunningFake


@pytest.fixture
def app_config(app_config: dict[str, Any], fake_graph: RunningFake) -> dict[str, Any]:
    """The fake Graph, and the add-in's mailbox proof required (the NAA token proves Alice's mailbox)."""
    return {**app_config, "GRAPH_URL": fake_graph.url, "REQUIRE_MAILBOX_PROOF": "on"}


@pytest.mark.parametrize("org_tenant", ["", "another-tenant"])
def test_a_persons_own_app_only_failure_is_not_an_org_breakage(app: Flask, client: FlaskClient, ca: TestCA,
                                                              fake_microsoft: RunningFake,
                                                              org_tenant: str) -> None:
    ms = fake_microsoft.state
    app_only_tenant(app, ms)
    who = login(client, ca.ca_path, mailbox=ALICE, proof=ms.naa_token(ALICE))
    with app.app_context():
        store = services().store
        mailbox = store.mailboxes.get(who.uid)
        assert mailbox is not None and mailbox.state is SyncState.RUNNING and mailbox.connection["app_only"]
        if org_tenant:
            store.org_access.connect_microsoft(mailbox.org_id, org_tenant, "admin")
        assert not org_access_failed(who.uid, AuthRevoked("Graph refused this mailbox"))
        assert not store.org_access.get(mailbox.org_id).is_broken("microsoft")
        assert store.mailboxes.get(who.uid).state is SyncState.RUNNING  # type: ignore[union-attr]


@pytest.mark.parametrize("org_tenant", ["", "another-tenant"])
def test_disconnecting_leaves_a_persons_own_app_only_sync_alone(app: Flask, client: FlaskClient, ca: TestCA,
                                                               fake_microsoft: RunningFake, org_tenant: str) -> None:
    ms = fake_microsoft.state
    user = app_only_tenant(app, ms)
    who = login(client, ca.ca_path, mailbox=ALICE, proof=ms.naa_token(ALICE))
    with app.app_context():
        store = services().store
        mailbox = store.mailboxes.get(who.uid)
        assert mailbox is not None and mailbox.connection["app_only"]
        if org_tenant:
            store.org_access.connect_microsoft(mailbox.org_id, org_tenant, "admin")
        _, stopped = disconnect_org(store, mailbox.org_id, "microsoft")
        assert stopped == [] and store.mailboxes.get(who.uid).state is SyncState.RUNNING  # type: ignore[union-attr]
        assert store.tenants.has_consent(user.tid)  # her tenant's consent is not the org's to withdraw


def test_a_disconnected_tenant_no_longer_activates_app_only(app: Flask, client: FlaskClient, ca: TestCA,
                                                           fake_microsoft: RunningFake) -> None:
    ms = fake_microsoft.state
    user = app_only_tenant(app, ms)
    org = "00D000000000001EAA"
    with app.app_context():
        store = services().store
        store.org_access.connect_microsoft(org, user.tid, "admin")
        connected, _ = disconnect_org(store, org, "microsoft")
        assert connected and not store.tenants.has_consent(user.tid)
    who = login(client, ca.ca_path, mailbox=ALICE, proof=ms.naa_token(ALICE))
    assert sync_of(client, who)["state"] == "not_activated"
