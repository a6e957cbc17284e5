"""What changes while a run goes on: a disable, a colleague's backoff, a Resume at its very end.

Each test forces the interleaving by doing the other party's step inside the run (a wrapped write
or state read): the product's code is the real one on both sides.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from backend.extensions import services
from backend.store.mailboxes import SyncState
from backend.sync import activation, budget, org_access
from backend.sync.cadence import schedule_next
from backend.sync.run import MailboxRun
from tests.runs import run_mailbox
from tests.sfhelpers import SalesforceUser
from tests.sync.items import ListMailbox, mail

CONTACT = "c0@customer.example"


@pytest.fixture(autouse=True)
def one_email(sf: SalesforceUser, box: ListMailbox) -> None:
    """One email from a known contact in Alice's mailbox (``sf``, ``box``: tests/sync/conftest.py)."""
    sf.data.add_contact(CONTACT)
    box.add("inbox", mail(sender=CONTACT, subject="s", body="b", message_id="<m0@customer.example>"))


def during_the_write(monkeypatch: Any, step: Any) -> None:
    """Run ``step`` right after the run's first write (as another process would, meanwhile)."""
    original = MailboxRun.write

    def write_then_step(self: MailboxRun, emails: Any, events: Any) -> None:
        original(self, emails, events)
        step()

    monkeypatch.setattr(MailboxRun, "write", write_then_step)


def test_a_disable_during_a_run_keeps_its_reason_so_the_fix_resumes_it(sf: SalesforceUser, monkeypatch: Any) -> None:
    store = services().store
    # A colleague's run found the org's access refused: the breakage disables this mailbox too.
    during_the_write(monkeypatch, lambda: org_access._disable(store, sf.uid, "consent withdrawn"))
    record = run_mailbox(sf.uid)
    assert record["status"] == "partial" and record["error"] is None  # it stopped once it saw the state
    mailbox = store.mailboxes.get(sf.uid)
    assert mailbox is not None and mailbox.state is SyncState.DISABLED_ERROR
    assert mailbox.error is not None and mailbox.error["code"] == org_access.ORG_ERROR
    assert org_access.resume_org(store, sf.user().org_id) == 1
    assert store.mailboxes.get(sf.uid).state is SyncState.RUNNING  # type: ignore[union-attr]


def test_a_run_that_got_through_still_clears_an_old_error(sf: SalesforceUser) -> None:
    store = services().store
    store.mailboxes.update(sf.uid, error={"code": "unavailable", "message": "x", "since": 1.0}, auth_failures=2)
    run_mailbox(sf.uid)
    mailbox = store.mailboxes.get(sf.uid)
    assert mailbox is not None and mailbox.error is None and mailbox.auth_failures == 0


@pytest.mark.parametrize(("used", "level_after"), [(9500, 2), (5000, 0)])
def test_the_backoff_ladder_restarts_only_once_usage_is_under_the_budget(sf: SalesforceUser, box: ListMailbox,
                                                                         used: int, level_after: int) -> None:
    store = services().store
    org_id = sf.user().org_id
    store.orgs.update(org_id, api_backoff_level=2, api_backoff_until=time.time() - 1)  # its wait just ended
    sf.data.api_used, sf.data.api_max = used, 10_000
    # Mail from people Salesforce does not know: looked up (the usage is seen), nothing written, so
    # the run is never stopped by the budget check after a write.
    box.items.clear()
    for i in range(3):
        box.add("inbox", mail(sender=f"stranger{i}@customer.example", subject="s", body="b",
                              message_id=f"<x{i}@customer.example>"))
    record = run_mailbox(sf.uid)
    assert record["salesforce_calls"] > 0 and record["counts"]["emails_written"] == 0
    assert store.orgs.get(org_id).api_backoff_level == level_after


def test_a_colleagues_new_backoff_is_not_cancelled_by_a_run_that_began_before_it(sf: SalesforceUser,
                                                                               monkeypatch: Any) -> None:
    store = services().store
    org_id = sf.user().org_id
    store.orgs.update(org_id, api_backoff_level=1, api_backoff_until=time.time() - 1)
    during_the_write(monkeypatch, lambda: budget.enter_backoff(store, org_id))  # a colleague hit the budget
    run_mailbox(sf.uid)
    org = store.orgs.get(org_id)
    assert org.api_backoff_level == 2 and org.api_backoff_until > time.time() + budget.BACKOFF_STEPS_SECONDS[1] - 60


@pytest.mark.parametrize("stopped_by", ["pause", "disable"])
def test_a_resume_at_the_end_of_a_run_keeps_the_mailbox_scheduled(sf: SalesforceUser, monkeypatch: Any,
                                                                  stopped_by: str) -> None:
    store = services().store
    if stopped_by == "pause":
        store.mailboxes.pause(sf.uid)
    else:
        store.mailboxes.disable(sf.uid, "disabled_by_admin", "An administrator turned sync off.")
    store.schedule.remove(sf.uid)
    real_get = store.mailboxes.get

    def read_then_resume(mid: str) -> Any:
        seen = real_get(mid)  # the ending run reads "paused" (or disabled) ...
        monkeypatch.setattr(store.mailboxes, "get", real_get)
        # ... and the person presses Resume (or the admin Enable) before it unschedules.
        if stopped_by == "pause":
            activation.resume(store, mid)
        else:
            store.mailboxes.enable(mid)
        store.schedule.set_next(mid, time.time())
        return seen

    monkeypatch.setattr(store.mailboxes, "get", read_then_resume)
    schedule_next(store, services().settings, sf.uid, True, time.time())  # the run's last step
    assert store.mailboxes.get(sf.uid).state is SyncState.RUNNING  # type: ignore[union-attr]
    assert store.schedule.next_of(sf.uid) is not None
