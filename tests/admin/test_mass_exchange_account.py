"""Another Exchange service account saved: everyone activated with the old one is read with the new one.

Found in review: a run took login and EWS URL from the mailbox's connection (the old account) but the
password from the org secret (the new account's), so saving a new account broke everyone.
"""

from __future__ import annotations

from backend.extensions import services
from backend.jobs.sync import sync_mailbox
from backend.store.mailboxes import SyncState
from sandbox.harness.exchange import ExchangeHarness
from tests.exchange_mass_env import SERVICE, activate_exchange, mass_config  # noqa: F401 - fixture
from tests.mass_env import DOMAIN, MassEnv, address

NEW = f"svc-sync2@{DOMAIN}"
NEW_PASSWORD = "svc2-Passw0rd"
CUSTOMER = "customer@client.example"


def test_a_new_service_account_keeps_existing_mailboxes_running(exch: MassEnv, ews: ExchangeHarness) -> None:
    store = services().store
    exch.sf.state.rest.add_contact(CUSTOMER)
    activate_exchange(exch, ["bob"])
    ews.state.add_email(address("bob"), "inbox", subject="one", sender=CUSTOMER, to=[address("bob")])
    assert sync_mailbox(exch.uid("bob"))["counts"]["written"] == 1
    # The admin moves to a new service account with the same role scope, and the old one is removed.
    ews.state.add_user(NEW, NEW_PASSWORD, account="svc-sync2", display_name="Sync 2")
    ews.state.impersonation[NEW] = set(ews.state.impersonation[SERVICE])
    saved = exch.client.put("/api/admin/connections/exchange", headers={"X-CSRF-Token": exch.csrf},
                            json={"login": NEW, "password": NEW_PASSWORD, "ews_url": ews.ews_url})
    assert saved.status_code == 200, saved.get_data(as_text=True)
    del ews.state.impersonation[SERVICE]
    ews.state.add_email(address("bob"), "inbox", subject="two", sender=CUSTOMER, to=[address("bob")])
    record = sync_mailbox(exch.uid("bob"))
    assert record["counts"]["written"] == 1, record
    mailbox = store.mailboxes.get(exch.uid("bob"))
    assert mailbox is not None and mailbox.state is SyncState.RUNNING and mailbox.auth_failures == 0
