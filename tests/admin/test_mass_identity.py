"""Mass activation gives a mailbox only to its own Salesforce user: primary address, one active user, no colleague.

Found in review: an alias of Bob's mailbox (sales@) activated a "Sales Team" Salesforce user on Bob's mail;
two active users with Bob's Email were resolved by whichever SOQL returned first; a person an admin
disabled was reported ``already_active``.
"""

from __future__ import annotations

from backend.connectors.mailbox import MailboxIdentity
from backend.extensions import services
from backend.store.mailboxes import SyncState
from backend.store.users import User
from backend.sync.activation import activate
from sandbox.harness.exchange import ExchangeHarness
from tests.exchange_mass_env import activate_exchange, mass_config  # noqa: F401 - fixture
from tests.mass_env import ORG, MassEnv, address


def _sales_user(mass: MassEnv) -> None:
    """A shared Salesforce user whose Email is an alias of Bob's mailbox."""
    mass.sf.state.add_user(address("sales"), email=address("sales"), name="Sales Team")
    mass.sf.state.preauthorized.add(address("sales"))


def test_an_exchange_alias_is_not_activated_for_another_salesforce_user(exch: MassEnv, ews: ExchangeHarness) -> None:
    ews.state.users[address("bob")].aliases.append(address("sales"))
    _sales_user(exch)
    results = {r["address"]: r for r in activate_exchange(exch, ["bob", "sales"])["results"]}
    assert results[address("bob")]["result"] == "activated"
    assert results[address("sales")]["result"] == "mailbox_mismatch"
    assert "primary address" in results[address("sales")]["message"]
    assert services().store.mailboxes.get(exch.uid("sales")) is None


def test_a_microsoft_alias_is_not_activated_for_another_salesforce_user(mass: MassEnv) -> None:
    bob = mass.graph.ms.find_user(address("bob"))
    assert bob is not None
    bob.aliases.append(address("sales"))
    _sales_user(mass)
    results = {r["address"]: r for r in mass.activate(["bob", "sales"])["results"]}
    assert results[address("bob")]["result"] == "activated"
    assert results[address("sales")]["result"] == "mailbox_mismatch"
    assert services().store.mailboxes.get(mass.uid("sales")) is None


def test_two_active_users_with_one_email_are_not_guessed(mass: MassEnv) -> None:
    sf = mass.sf.state
    bob = sf.users.pop(address("bob"))
    integration = sf.add_user("integration@acme.example.prod", email=address("bob"), name="Integration User")
    sf.preauthorized.add(integration.username)
    sf.users[bob.username] = bob  # Bob's own user after it: SOQL gives no order
    (row,) = mass.activate(["bob"])["results"]
    assert row["result"] == "ambiguous_salesforce_user", row
    assert row["message"].startswith("Several active Salesforce users")
    assert services().store.mailboxes.get(mass.uid("bob")) is None


def test_an_inactive_namesake_does_not_make_it_ambiguous(mass: MassEnv) -> None:
    old = mass.sf.state.add_user("bob.old@acme.example.prod", email=address("bob"), name="Bob (old)")
    old.is_active = False
    (row,) = mass.activate(["bob"])["results"]
    assert row["result"] == "activated" and row["user_id"] == mass.uid("bob")


def test_a_mailbox_a_colleague_already_syncs_is_left_alone(mass: MassEnv) -> None:
    store = services().store
    # Jill's user synced Bob's mailbox before (a personal connection made in his mailbox).
    jill = User(id=mass.uid("jill"), org_id=ORG, sf_user_id=mass.sf_id("jill"), username=address("jill"),
                email=address("jill"))
    store.users.save(jill)
    activate(store, jill, "microsoft", MailboxIdentity(primary=address("bob")), {"home_account_id": "x"}, {})
    (row,) = mass.activate(["bob"])["results"]
    assert row["result"] == "mailbox_in_use", row
    assert store.mailboxes.get(mass.uid("bob")) is None


def test_a_held_person_is_reported_locked_not_already_active(mass: MassEnv) -> None:
    mass.activate(["bob"])
    disabled = mass.post(f"/api/admin/users/{mass.uid('bob')}/disable", json={})
    assert disabled.status_code == 200, disabled.get_data(as_text=True)
    mailbox = services().store.mailboxes.get(mass.uid("bob"))
    assert mailbox is not None and mailbox.admin_hold
    (row,) = mass.activate(["bob"])["results"]
    assert row["result"] == "locked_by_admin", row
    assert services().store.mailboxes.get(mass.uid("bob")).state is not SyncState.RUNNING
