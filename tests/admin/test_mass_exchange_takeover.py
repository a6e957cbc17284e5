"""A person taking over the Exchange mailbox their administrator mass-activated through the service account.

First their Salesforce login in the sidebar takes over the Salesforce side while the mailbox is still
read by impersonation; then Connect to Exchange with their own password makes the connection theirs:
the same user and sync mailbox, cursors kept, nothing written twice (the Microsoft 365 version is
``tests/admin/test_mass_takeover.py``).
"""

from __future__ import annotations

from typing import Any

from backend.connectors.salesforce import JwtCredentials
from backend.extensions import services
from backend.jobs.sync import sync_mailbox
from backend.store.mailboxes import SyncState
from backend.sync.collaborators import credentials_for_run
from backend.sync.mass import VIA
from sandbox.harness.exchange import ExchangeHarness
from sandbox.login import LoggedIn
from tests.exchange_mass_env import (
    SERVICE,
    activate_exchange,
    mass_config,  # noqa: F401 - the fixture, with the fake Exchange server
)
from tests.mass_env import ORG, MassEnv, address, pane_login

CUSTOMER = "customer@client.example"
JWT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
BOB_EXCHANGE_PASSWORD = "bob-password"  # Bob's own mailbox password in the fake (sandbox.harness.exchange)


def _mail(ews: ExchangeHarness, subject: str) -> None:
    ews.state.add_email(address("bob"), "inbox", subject=subject, sender=CUSTOMER, to=[address("bob")])


def _subjects(mass: MassEnv) -> list[str]:
    return sorted(m["Subject"] for m in mass.sf.state.rest.all("EmailMessage"))


def _rows(mass: MassEnv) -> list[tuple[str, str]]:
    rows = mass.client.get("/api/admin/users", query_string={"q": "bob"}).json["users"]
    return [(r["id"], r["access_type"]) for r in rows]


def _mass_activated_with_one_email(exch: MassEnv, ews: ExchangeHarness) -> None:
    exch.sf.state.rest.add_contact(CUSTOMER)
    (row,) = activate_exchange(exch, ["bob"])["results"]
    assert row["result"] == "activated", row
    _mail(ews, "Quote")
    record = sync_mailbox(exch.uid("bob"))
    assert record["status"] == "ok" and record["counts"]["written"] == 1, record


def _salesforce_login(exch: MassEnv, ca: Any) -> LoggedIn:
    bob = pane_login(exch, ca, "bob")
    assert bob.uid == exch.uid("bob")  # the same person of ours, not a new one
    return bob


def test_their_salesforce_login_takes_over_while_the_service_account_reads(exch: MassEnv, ews: ExchangeHarness,
                                                                         ca: Any) -> None:
    store = services().store
    _mass_activated_with_one_email(exch, ews)
    users_before = sorted(store.users.org_user_ids(ORG))
    user = store.users.get(exch.uid("bob"))
    assert user is not None and isinstance(credentials_for_run(store, services().clients, user), JwtCredentials)
    grants = exch.sf.state.token_requests.count(JWT)

    bob = _salesforce_login(exch, ca)
    user = store.users.get(exch.uid("bob"))
    assert user is not None
    assert not isinstance(credentials_for_run(store, services().clients, user), JwtCredentials)
    exch.sf.state.expire_access_tokens()  # the next run must sign in again: with their own login
    refreshes = exch.sf.state.token_requests.count("refresh_token")
    _mail(ews, "Order")
    record = sync_mailbox(exch.uid("bob"))
    assert record["status"] == "ok" and record["counts"]["written"] == 1, record

    mailbox = store.mailboxes.get(exch.uid("bob"))
    assert mailbox is not None and mailbox.state is SyncState.RUNNING and mailbox.provider == "exchange"
    assert mailbox.connection["impersonation"] and mailbox.connection["login"] == SERVICE
    assert mailbox.connection["via"] == VIA
    assert sorted(store.users.org_user_ids(ORG)) == users_before
    assert _rows(exch) == [(exch.uid("bob"), "impersonation")]
    assert _subjects(exch) == ["Order", "Quote"]
    assert {m["CreatedById"] for m in exch.sf.state.rest.all("EmailMessage")} == {exch.sf_id("bob")}
    assert exch.sf.state.token_requests.count(JWT) == grants
    assert exch.sf.state.token_requests.count("refresh_token") == refreshes + 1
    view = exch.app.test_client().get("/api/sync", headers=bob.headers).json
    # Still the org's connection: the org's default "may not deactivate" rule still applies.
    assert view["state"] == "running" and "deactivate" in view["locked_controls"], view


def test_their_own_exchange_password_takes_over_the_same_mailbox_without_a_duplicate(
        exch: MassEnv, ews: ExchangeHarness, ca: Any) -> None:
    store = services().store
    _mass_activated_with_one_email(exch, ews)
    users_before = sorted(store.users.org_user_ids(ORG))
    before = store.mailboxes.get(exch.uid("bob"))
    cursors = store.mailboxes.cursors(exch.uid("bob"))
    assert before is not None and cursors

    bob = _salesforce_login(exch, ca)
    pane = exch.app.test_client()
    answer = pane.post("/api/sync/exchange", headers=bob.headers,
                       json={"login": address("bob"), "password": BOB_EXCHANGE_PASSWORD, "ews_url": ews.ews_url})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json["state"] == "running" and answer.json["mailbox"] == address("bob")

    mailbox = store.mailboxes.get(exch.uid("bob"))
    assert mailbox is not None and mailbox.id == before.id and mailbox.state is SyncState.RUNNING
    assert mailbox.provider == "exchange" and mailbox.connection["login"] == address("bob")
    assert not mailbox.connection.get("impersonation") and mailbox.connection.get("via") != VIA, mailbox.connection
    assert store.mailboxes.cursors(exch.uid("bob")) == cursors
    assert sorted(store.users.org_user_ids(ORG)) == users_before
    assert _rows(exch) == [(exch.uid("bob"), "password")]  # the console: their own Exchange password

    # Out of the service account's scope now: only Bob's own password can read the mailbox.
    ews.state.impersonation[SERVICE].discard(address("bob"))
    _mail(ews, "Order")
    record = sync_mailbox(exch.uid("bob"))
    assert record["status"] == "ok" and record["counts"]["written"] == 1, record
    assert record["counts"]["duplicates"] == 0, record
    again = sync_mailbox(exch.uid("bob"))
    assert again["status"] == "ok" and again["counts"]["written"] == 0, again
    assert _subjects(exch) == ["Order", "Quote"]
    assert {m["CreatedById"] for m in exch.sf.state.rest.all("EmailMessage")} == {exch.sf_id("bob")}
    assert not store.org_access.get(ORG).is_broken("exchange")
    # Their own connection now: the org's rules for mass-activated mailboxes no longer bind them.
    assert pane.get("/api/sync", headers=bob.headers).json["locked_controls"] == {}
