"""A person taking over the mailbox their administrator mass-activated: no second mailbox, no duplicate records.

``tests/admin/test_mass_runs.py`` covers their Salesforce login in the sidebar taking over the
Salesforce side (the mailbox still read through the org's access). Here they also connect the
mailbox with their own Microsoft 365 consent: the same user and sync mailbox, one row in the
console, their connection replacing the org's (so the mass-activation policy no longer applies),
and what was already logged is not logged twice.
"""

from __future__ import annotations

from typing import Any

from backend.extensions import services
from backend.jobs.sync import sync_mailbox
from backend.store.mailboxes import SyncState
from backend.sync.mass import VIA
from tests.admin.test_mass_runs import CUSTOMER, mail
from tests.auth.test_microsoft import connect
from tests.mass_env import ORG, MassEnv, address, pane_login


def test_their_own_consent_takes_over_the_same_mailbox_without_a_duplicate(mass: MassEnv, ca: Any) -> None:
    store = services().store
    mass.sf.state.rest.add_contact(CUSTOMER)
    mass.activate(["bob"])
    mail(mass, "bob", "Quote")
    assert sync_mailbox(mass.uid("bob"))["counts"]["written"] == 1
    users_before = sorted(store.users.org_user_ids(ORG))
    assert store.mailboxes.get(mass.uid("bob")).connection["via"] == VIA  # type: ignore[union-attr]

    bob = pane_login(mass, ca, "bob")
    pane = mass.app.test_client()
    status, payload = connect(pane, ca, bob, username=address("bob"))
    assert status == 200 and payload["status"] == "ok", payload

    mailbox = store.mailboxes.get(mass.uid("bob"))
    assert mailbox is not None and mailbox.state is SyncState.RUNNING
    assert mailbox.connection.get("via") != VIA and not mailbox.connection.get("app_only"), mailbox.connection
    assert sorted(store.users.org_user_ids(ORG)) == users_before  # the same person of ours
    rows = mass.client.get("/api/admin/users", query_string={"q": "bob"}).json["users"]
    assert [(r["id"], r["access_type"]) for r in rows] == [(mass.uid("bob"), "delegated")], rows

    mail(mass, "bob", "Order")
    for _ in range(2):  # the run after the switch reads again what the org's connection had read
        record = sync_mailbox(mass.uid("bob"))
        assert record["status"] == "ok", record
    messages = mass.sf.state.rest.all("EmailMessage")
    assert sorted(m["Subject"] for m in messages) == ["Order", "Quote"]
    assert {m["CreatedById"] for m in messages} == {mass.sf_id("bob")}

    # Their own connection now: the org's "may not deactivate" rule for mass-activated mailboxes is not theirs.
    view = pane.get("/api/sync", headers=bob.headers).json
    assert view["locked_controls"] == {} and view["mailbox"] == address("bob")
    assert pane.post("/api/sync/deactivate", headers=bob.headers).json["state"] == "deactivated"
