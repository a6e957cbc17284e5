"""The run applies the org's policy: a locked value wins over the person's, a default until they choose."""

from __future__ import annotations

from backend.extensions import services
from tests.runs import run_mailbox
from tests.sfhelpers import SalesforceUser
from tests.sync.items import ListMailbox
from tests.sync.test_engine import contacts, inbox  # seeders (box and sf: tests/sync/conftest.py)


def test_a_locked_value_wins_over_the_persons_choice(sf: SalesforceUser, box: ListMailbox) -> None:
    store = services().store
    settings = dict(store.mailboxes.get(sf.uid).settings)  # type: ignore[union-attr]
    settings.update(sync_emails=True, chosen=["sync_emails"])
    store.mailboxes.update(sf.uid, settings=settings)
    contacts(sf, 3)
    inbox(box, 3)
    org_id = store.mailboxes.get(sf.uid).org_id  # type: ignore[union-attr]
    store.orgs.update(org_id, sync_emails=False, locked=["sync_emails"])
    record = run_mailbox(sf.uid)
    assert record["counts"]["read"] == 0 and sf.data.all("EmailMessage") == []
    # Unlocked, the org's value is only a default: the person chose emails, so they are logged.
    store.orgs.update(org_id, locked=[])
    record = run_mailbox(sf.uid)
    assert record["counts"]["written"] == 3


def test_the_orgs_default_applies_until_the_person_chooses(sf: SalesforceUser, box: ListMailbox) -> None:
    store = services().store
    contacts(sf, 2)
    inbox(box, 2)
    org_id = store.mailboxes.get(sf.uid).org_id  # type: ignore[union-attr]
    store.orgs.update(org_id, sync_emails=False)
    assert run_mailbox(sf.uid)["counts"]["read"] == 0
