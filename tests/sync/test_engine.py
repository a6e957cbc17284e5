"""The engine's own logic (batching, cursors, dedup, counts, budget, schedule) with an in-memory mailbox.

Salesforce is the wire-level fake with the real connector; only the mailbox side is the in-test
:class:`ListMailbox` (end-to-end tests with real mailbox connectors are in ``tests/jobs``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from backend.connectors import MailboxSecrets
from backend.connectors.crm import ApiLimitExceeded
from backend.connectors.mailbox import Deletion, Folder
from backend.errors import AuthRevoked, Unavailable
from backend.extensions import services
from backend.store.mailboxes import SyncState
from backend.sync import budget, refusals, run
from backend.sync.run import MailboxRun
from sandbox.salesforce_rest import Rule
from tests.runs import pin_batch_items, run_mailbox
from tests.sfhelpers import SalesforceUser, redis_text
from tests.sync.items import OWNER, ListMailbox, mail, meeting


def contacts(sf: SalesforceUser, n: int) -> list[str]:
    """Seed n contacts c{i}@customer.example."""
    return [sf.data.add_contact(f"c{i}@customer.example") for i in range(n)]


def inbox(box: ListMailbox, n: int, start: int = 0, people: int = 10) -> None:
    """n incoming emails from seeded contacts."""
    for i in range(start, start + n):
        box.add("inbox", mail(sender=f"c{i % people}@customer.example", subject=f"Subject {i}",
                              body=f"Body text {i}", message_id=f"<m{i}@customer.example>"))


def test_emails_to_known_contacts_are_logged_once_with_relations(sf: SalesforceUser, box: ListMailbox) -> None:
    ids = contacts(sf, 10)
    inbox(box, 30)
    record = run_mailbox(sf.uid)
    counts = record["counts"]
    assert counts["read"] == 30 and counts["written"] == 30 and counts["matched"] == 30
    assert counts["duplicates"] == 0 and counts["quarantined"] == 0
    messages = sf.data.all("EmailMessage")
    assert sorted(m["MessageIdentifier"] for m in messages) == sorted(f"<m{i}@customer.example>" for i in range(30))
    froms = [r for r in sf.data.all("EmailMessageRelation") if r["RelationType"] == "FromAddress"]
    assert sorted(r["RelationId"] for r in froms) == sorted(ids[i % 10] for i in range(30))
    owner = sf.user().sf_user_id
    tos = [r for r in sf.data.all("EmailMessageRelation") if r["RelationType"] == "ToAddress"]
    assert len(tos) == 30 and {r["RelationId"] for r in tos} == {owner}
    # describe (first time for the org) + one lookup + one write.
    assert record["salesforce_calls"] == 3 == len(sf.data.calls)
    assert len(sf.data.write_calls) == 1
    assert services().store.mailboxes.cursors(sf.uid)["inbox"] == "30"


def test_next_run_without_changes_makes_no_salesforce_call(sf: SalesforceUser, box: ListMailbox) -> None:
    contacts(sf, 10)
    inbox(box, 5)
    run_mailbox(sf.uid)
    sf.data.reset_calls()
    record = run_mailbox(sf.uid)
    assert record["salesforce_calls"] == 0 and sf.data.calls == []
    assert record["counts"]["read"] == 0


def test_one_new_email_is_one_write_call(sf: SalesforceUser, box: ListMailbox) -> None:
    contacts(sf, 10)
    inbox(box, 5)
    run_mailbox(sf.uid)
    inbox(box, 1, start=5)
    sf.data.reset_calls()
    record = run_mailbox(sf.uid)
    assert record["counts"]["written"] == 1
    assert len(sf.data.write_calls) == 1 and len(sf.data.calls) == 2  # one lookup, one write


def test_same_email_in_inbox_and_sent_is_logged_once(sf: SalesforceUser, box: ListMailbox) -> None:
    contacts(sf, 1)
    box.add("inbox", mail(sender=OWNER, to=("c0@customer.example",), message_id="<same@x>", folder=Folder.INBOX))
    box.add("sent", mail(sender=OWNER, to=("c0@customer.example",), message_id="<same@x>", folder=Folder.SENT))
    record = run_mailbox(sf.uid)
    assert record["counts"]["written"] == 1 and record["counts"]["duplicates"] == 1
    assert len(sf.data.all("EmailMessage")) == 1


def test_filtered_items_are_counted_with_reasons(sf: SalesforceUser, box: ListMailbox) -> None:
    contacts(sf, 1)
    box.add("inbox", mail(sender="c0@customer.example", message_id="<ok@x>"))
    box.add("inbox", mail(sender="friend@gmail.com", message_id="<free@x>"))
    box.add("inbox", mail(sender="colleague@acme.example", message_id="<internal@x>"))
    box.add("inbox", mail(sender="stranger@unknown.example", message_id="<nomatch@x>"))
    box.add("calendar", meeting(hours=48, uid="long"))
    box.add("calendar", meeting(uid="cancelled-new", cancelled=True))
    record = run_mailbox(sf.uid)
    counts = record["counts"]
    assert counts["read"] == 6 and counts["written"] == 1
    assert counts["filtered"] == 5
    assert counts["filtered_by"] == {"cancelled": 1, "free_mail": 1, "internal": 1, "no_match": 1, "too_long": 1}
    assert counts["written"] + counts["filtered"] + counts["duplicates"] + counts["quarantined"] == counts["read"]


def test_batches_save_cursors_after_their_writes(sf: SalesforceUser, box: ListMailbox, monkeypatch: Any) -> None:
    contacts(sf, 10)
    inbox(box, 250)
    pin_batch_items(monkeypatch, 100)
    saved: list[dict[str, str]] = []
    original = services().store.mailboxes.save_cursors_if_connected

    def spy(mid: str, cursors: dict[str, str]) -> bool:
        # Every cursor saved covers only items already in Salesforce.
        assert len(sf.data.all("EmailMessage")) >= int(cursors.get("inbox", "0"))
        saved.append(dict(cursors))
        return original(mid, cursors)

    monkeypatch.setattr(services().store.mailboxes, "save_cursors_if_connected", spy)
    record = run_mailbox(sf.uid)
    assert record["counts"]["written"] == 250
    assert [c.get("inbox") for c in saved] == ["100", "200", "250"]


def test_failure_mid_run_keeps_earlier_batches_and_the_rerun_completes(sf: SalesforceUser, box: ListMailbox,
                                                                       monkeypatch: Any) -> None:
    contacts(sf, 10)
    inbox(box, 250)
    pin_batch_items(monkeypatch, 100)
    original = MailboxRun.write

    def write_then_break(self: MailboxRun, emails: Any, events: Any) -> None:
        original(self, emails, events)
        sf.data.fail_unavailable = 1  # Salesforce goes down after the first batch

    monkeypatch.setattr(MailboxRun, "write", write_then_break)
    with pytest.raises(Unavailable):
        run_mailbox(sf.uid)
    assert services().store.mailboxes.cursors(sf.uid)["inbox"] == "100"
    assert len(sf.data.all("EmailMessage")) == 100
    monkeypatch.setattr(MailboxRun, "write", original)
    record = run_mailbox(sf.uid)
    keys = [m["MessageIdentifier"] for m in sf.data.all("EmailMessage")]
    assert len(keys) == len(set(keys)) == 250
    assert record["counts"]["written"] == 150


def test_rejected_items_are_quarantined_without_content(sf: SalesforceUser, box: ListMailbox,
                                                        redis_client: redis.Redis) -> None:
    contacts(sf, 3)
    sf.data.rules.append(Rule("EmailMessage", lambda r: "VETO" in (r.get("Subject") or ""), "Blocked by rule"))
    box.add("inbox", mail(sender="c0@customer.example", subject="Secret VETO deal", body="Top secret body",
                          message_id="<veto@x>"))
    box.add("inbox", mail(sender="c1@customer.example", subject="Fine deal", body="Confidential pricing",
                          message_id="<fine@x>"))
    record = run_mailbox(sf.uid)
    assert record["counts"]["written"] == 1 and record["counts"]["quarantined"] == 1
    (entry,) = services().store.quarantine.recent(sf.uid)
    assert entry["key"] == services().store.quarantine.ref("<veto@x>") and entry["object"] == "EmailMessage"
    assert "Blocked by rule" in entry["reason"]
    assert set(entry) == {"key", "object", "reason", "at"}
    text = redis_text(redis_client)
    for secret in ("Secret VETO deal", "Top secret body", "Fine deal", "Confidential pricing"):
        assert secret not in text, secret


def test_a_locked_row_is_retried_not_quarantined_and_the_cursor_waits(sf: SalesforceUser, box: ListMailbox) -> None:
    contacts(sf, 3)
    # A colleague's run holds the row for a moment: Salesforce refuses one email with a lock error.
    sf.data.rules.append(Rule("EmailMessage", lambda r: r.get("MessageIdentifier") == "<m1@customer.example>",
                              "unable to obtain exclusive access to this record", code="UNABLE_TO_LOCK_ROW", times=1))
    inbox(box, 3, people=3)
    with pytest.raises(Unavailable, match="UNABLE_TO_LOCK_ROW"):
        run_mailbox(sf.uid)
    store = services().store
    assert store.quarantine.recent(sf.uid) == []
    assert "inbox" not in store.mailboxes.cursors(sf.uid)  # the batch is read again
    assert len(sf.data.all("EmailMessage")) == 2
    record = run_mailbox(sf.uid)
    keys = sorted(m["MessageIdentifier"] for m in sf.data.all("EmailMessage"))
    assert keys == [f"<m{i}@customer.example>" for i in range(3)]
    assert record["counts"]["written"] == 1 and record["counts"]["duplicates"] == 2
    assert len(from_relations(sf)) == 3


def test_paused_and_deactivated_mailboxes_do_not_run(sf: SalesforceUser, box: ListMailbox) -> None:
    inbox(box, 3)
    services().store.mailboxes.pause(sf.uid)
    assert run_mailbox(sf.uid) == {"status": "skipped", "reason": "paused"}
    services().store.mailboxes.resume(sf.uid)
    services().store.mailboxes.deactivate(sf.uid)
    assert run_mailbox(sf.uid)["reason"] == "deactivated"
    assert box.requests == 0 and sf.data.calls == []


def test_deactivated_during_a_run_leaves_no_cursor(sf: SalesforceUser, box: ListMailbox, monkeypatch: Any) -> None:
    contacts(sf, 10)
    inbox(box, 150)
    pin_batch_items(monkeypatch, 100)
    original = MailboxRun.write

    def write_then_deactivate(self: MailboxRun, emails: Any, events: Any) -> None:
        original(self, emails, events)
        services().store.mailboxes.deactivate(sf.uid)

    monkeypatch.setattr(MailboxRun, "write", write_then_deactivate)
    record = run_mailbox(sf.uid)
    assert record["stopped"] == "deactivated"
    assert services().store.mailboxes.cursors(sf.uid) == {}
    assert services().store.schedule.next_of(sf.uid) is None


def test_background_run_stops_over_the_api_budget_and_the_org_backs_off(sf: SalesforceUser, box: ListMailbox,
                                                                        monkeypatch: Any) -> None:
    contacts(sf, 10)
    inbox(box, 300)
    pin_batch_items(monkeypatch, 100)
    sf.data.api_used, sf.data.api_max = 8500, 10_000  # 85 % > 80 %
    record = run_mailbox(sf.uid)
    assert record["status"] == "partial" and record["stopped"] == "api_budget"
    assert record["counts"]["written"] == 100  # the batch in flight finished; the rest waits
    org = services().store.orgs.get(sf.user().org_id)
    assert org.api_backoff_level == 1 and org.api_backoff_until > time.time() + 1700
    # Background runs hold off without a single call; Sync now still works.
    sf.data.reset_calls()
    assert run_mailbox(sf.uid)["reason"] == "api_backoff" and sf.data.calls == []
    assert services().store.schedule.next_of(sf.uid) == pytest.approx(org.api_backoff_until)
    done = run_mailbox(sf.uid, interactive=True)
    assert done["status"] == "ok" and done["counts"]["written"] == 200


def test_backoff_steps_grow_and_reset(sf: SalesforceUser) -> None:
    store = services().store
    org_id = sf.user().org_id
    now = 1_000_000.0
    untils = []
    for step in range(5):
        untils.append(budget.enter_backoff(store, org_id, now) - now)
        now += untils[-1] + 1
        assert store.orgs.get(org_id).api_backoff_level == min(step + 1, 4)
    assert untils == [1800, 9000, 16200, 23400, 23400]


def test_request_limit_exceeded_backs_the_org_off(sf: SalesforceUser, box: ListMailbox) -> None:
    contacts(sf, 1)
    inbox(box, 1, people=1)
    sf.data.limit_exceeded = True
    with pytest.raises(ApiLimitExceeded):
        run_mailbox(sf.uid, interactive=True)
    mailbox = services().store.mailboxes.get(sf.uid)
    assert mailbox is not None and mailbox.last_run is not None
    assert mailbox.last_run["error"]["code"] == "api_limit_exceeded"
    assert services().store.orgs.get(sf.user().org_id).api_backoff_level == 1
    assert "inbox" not in services().store.mailboxes.cursors(sf.uid)


def test_quiet_runs_stretch_the_interval_and_a_change_resets_it(sf: SalesforceUser, box: ListMailbox) -> None:
    contacts(sf, 1)
    intervals = []
    for i in range(6):
        if i == 5:
            inbox(box, 1, start=99, people=1)
        started = time.time()
        run_mailbox(sf.uid)
        mailbox = services().store.mailboxes.get(sf.uid)
        assert mailbox is not None
        intervals.append(mailbox.interval_seconds)
        nxt = services().store.schedule.next_of(sf.uid)
        assert nxt is not None and nxt >= started + mailbox.interval_seconds - 1
    assert intervals == [1800, 3600, 3600, 7200, 7200, 1800]


def test_a_quiet_sync_now_does_not_stretch_the_interval(sf: SalesforceUser, box: ListMailbox) -> None:
    contacts(sf, 1)
    for _ in range(3):
        run_mailbox(sf.uid, interactive=True)
    mailbox = services().store.mailboxes.get(sf.uid)
    assert mailbox is not None and (mailbox.quiet_runs, mailbox.interval_seconds) == (0, 1800)


def test_the_run_uses_only_the_sync_mailbox_addresses(sf: SalesforceUser, box: ListMailbox) -> None:
    """A login from another Outlook mailbox claims it as the add-in mailbox: the run does not treat it as its own."""
    store = services().store
    store.users.update(sf.uid, addin_mailbox="other@elsewhere.example")
    store.mailboxes.update(sf.uid, aliases=["alias@acme.example"])
    contacts(sf, 1)
    user = store.users.get(sf.uid)
    mailbox = store.mailboxes.get(sf.uid)
    assert user is not None and mailbox is not None
    run_ = MailboxRun(store, services().settings, services().clients, mailbox, user, store.orgs.get(user.org_id),
                      interactive=False)
    assert run_.filters.is_own(OWNER) and run_.filters.is_own("alias@acme.example")
    assert not run_.filters.is_own("other@elsewhere.example")
    assert not run_.filters.is_internal("colleague@elsewhere.example")


def test_mailbox_auth_failure_is_raised_with_its_source(sf: SalesforceUser, box: ListMailbox) -> None:
    box.revoked = True
    with pytest.raises(AuthRevoked) as info:
        run_mailbox(sf.uid)
    assert getattr(info.value, "source", None) == "mailbox"
    mailbox = services().store.mailboxes.get(sf.uid)
    assert mailbox is not None and mailbox.last_run["error"]["code"] == "mailbox_auth_failed"  # type: ignore[index]
    assert mailbox.state is SyncState.RUNNING  # counting and disabling is the job's business


def test_events_created_updated_and_cancelled(sf: SalesforceUser, box: ListMailbox) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    box.add("calendar", meeting(uid="m-1", subject="Demo"))
    record = run_mailbox(sf.uid)
    assert record["counts"]["events_written"] == 1
    (event,) = sf.data.all("Event")
    assert event["WhoId"] == bob and event["Subject"] == "Demo"
    box.add("calendar", meeting(uid="m-1", subject="Demo (moved)", hours=2))
    record = run_mailbox(sf.uid)
    assert record["counts"]["events_updated"] == 1 and sf.data.all("Event")[0]["Subject"] == "Demo (moved)"
    box.add("calendar", meeting(uid="m-1", subject="Demo (moved)", hours=2))
    sf.data.reset_calls()
    record = run_mailbox(sf.uid)
    assert record["counts"]["events_unchanged"] == 1 and sf.data.write_calls == []
    box.add("calendar", meeting(uid="m-1", subject="Demo (moved)", cancelled=True))
    run_mailbox(sf.uid)
    assert sf.data.all("Event")[0]["Subject"] == "Canceled: Demo (moved)"
    settings = dict(services().store.mailboxes.get(sf.uid).settings)  # type: ignore[union-attr]
    settings["cancelled_events"] = "delete"
    services().store.mailboxes.update(sf.uid, settings=settings)
    box.add("calendar", meeting(uid="m-1", cancelled=True))
    run_mailbox(sf.uid)
    assert sf.data.all("Event") == []


def test_settings_switch_folders_off(sf: SalesforceUser, box: ListMailbox) -> None:
    settings = dict(services().store.mailboxes.get(sf.uid).settings)  # type: ignore[union-attr]
    settings.update(sync_emails=False, sync_events=False)
    services().store.mailboxes.update(sf.uid, settings=settings)
    inbox(box, 3)
    record = run_mailbox(sf.uid)
    assert record["counts"]["read"] == 0 and box.requests == 0


def test_a_page_larger_than_a_batch_is_written_in_batches_and_its_cursor_saved_once(
        sf: SalesforceUser, box: ListMailbox, monkeypatch: Any) -> None:
    contacts(sf, 10)
    box.page_size = 250
    inbox(box, 250)
    pin_batch_items(monkeypatch, 100)
    saved: list[dict[str, str]] = []
    original = services().store.mailboxes.save_cursors_if_connected
    monkeypatch.setattr(services().store.mailboxes, "save_cursors_if_connected",
                        lambda mid, cursors: saved.append(dict(cursors)) or original(mid, cursors))
    record = run_mailbox(sf.uid)
    assert record["counts"]["written"] == 250
    # Three lookups and three writes (100, 100, 50), one cursor save for the page.
    assert len(sf.data.write_calls) == 3
    assert [c["inbox"] for c in saved if "inbox" in c] == ["250"]


def from_relations(sf: SalesforceUser) -> dict[str, str]:
    """Message-ID -> sender relation id, for every EmailMessage that has one."""
    ids = {m["Id"]: m["MessageIdentifier"] for m in sf.data.all("EmailMessage")}
    return {ids[r["EmailMessageId"]]: r["RelationId"] for r in sf.data.all("EmailMessageRelation")
            if r["RelationType"] == "FromAddress"}


def test_second_write_call_of_a_batch_fails_then_the_rerun_leaves_every_email_with_its_relation(
        sf: SalesforceUser, box: ListMailbox) -> None:
    # The default batch (SYNC_BATCH_ITEMS, 800 items) is two write calls of 400 emails, each with its
    # sender relation in the same call; the last 200 emails are a second batch.
    ids = contacts(sf, 10)
    inbox(box, 1000)
    assert services().settings.SYNC_BATCH_ITEMS == 800
    sf.data.fail_write_after = 1  # the second write call of the batch answers 503
    with pytest.raises(Unavailable):
        run_mailbox(sf.uid)
    assert len(sf.data.all("EmailMessage")) == 400
    assert len(from_relations(sf)) == 400  # no email of the first call lacks its relation
    assert "inbox" not in services().store.mailboxes.cursors(sf.uid)
    sf.data.reset_calls()
    record = run_mailbox(sf.uid)
    assert record["status"] == "ok"
    counts = record["counts"]
    assert counts["emails_written"] == 600 and counts["duplicates"] == 400 and counts["relations_repaired"] == 0
    keys = [m["MessageIdentifier"] for m in sf.data.all("EmailMessage")]
    assert len(keys) == len(set(keys)) == 1000
    assert from_relations(sf) == {f"<m{i}@customer.example>": ids[i % 10] for i in range(1000)}
    # One lookup, two write calls (400, then 200 emails with their relations; the second batch's
    # look-up rode in the first write call).
    assert len(sf.data.calls) == 3 and len(sf.data.write_calls) == 2


def test_a_rerun_repairs_emails_a_broken_run_left_without_their_sender_relation(sf: SalesforceUser,
                                                                              box: ListMailbox) -> None:
    ids = contacts(sf, 10)
    inbox(box, 30)
    # What the old split writes left behind: 20 emails logged, the relations of 12 lost.
    for i in range(20):
        message = sf.data.insert("EmailMessage", MessageIdentifier=f"<m{i}@customer.example>", Subject="x")
        if i >= 12:
            sf.data.insert("EmailMessageRelation", EmailMessageId=message, RelationId=ids[i % 10],
                           RelationType="FromAddress")
    sf.data.reset_calls()
    record = run_mailbox(sf.uid)
    counts = record["counts"]
    assert counts["emails_written"] == 10 and counts["duplicates"] == 20
    assert counts["relations_repaired"] == 12 and counts["relations_written"] == 22
    assert from_relations(sf) == {f"<m{i}@customer.example>": ids[i % 10] for i in range(30)}
    # describe + one lookup (the relations come with the Message-IDs) + one write for all of it.
    assert record["salesforce_calls"] == 3 and len(sf.data.write_calls) == 1
    # Repaired once: the next run with nothing new makes no call at all.
    sf.data.reset_calls()
    assert run_mailbox(sf.uid)["salesforce_calls"] == 0 and sf.data.calls == []


def test_a_colleague_logged_email_without_sender_gets_ours(sf: SalesforceUser, box: ListMailbox) -> None:
    # A colleague (Cc'd, the sender being internal) logged it without a sender; the sender's own
    # run finds it and adds itself as the sender.
    contacts(sf, 1)
    sf.data.insert("EmailMessage", MessageIdentifier="<out@x>", Subject="x")
    box.add("sent", mail(sender=OWNER, to=("c0@customer.example",), message_id="<out@x>", folder=Folder.SENT))
    record = run_mailbox(sf.uid)
    # The sender, and the contact as To (the fake's email was logged with no relation at all).
    assert record["counts"]["relations_repaired"] == 2
    assert from_relations(sf) == {"<out@x>": sf.user().sf_user_id}


@pytest.mark.parametrize("action", ["mark", "delete"])
def test_a_meeting_the_user_organised_that_leaves_the_calendar_is_cancelled_in_salesforce(
        sf: SalesforceUser, box: ListMailbox, action: str) -> None:
    sf.data.add_contact("bob@customer.example")
    settings = dict(services().store.mailboxes.get(sf.uid).settings)  # type: ignore[union-attr]
    settings["cancelled_events"] = action
    services().store.mailboxes.update(sf.uid, settings=settings)
    soon = datetime.now(tz=UTC) + timedelta(days=1)
    box.add("calendar", meeting(uid="mine", subject="Demo", start=soon))  # organised by the owner
    box.add("calendar", meeting(uid="theirs", subject="Their call", start=soon, organizer="bob@customer.example",
                                attendees=(OWNER,)))
    box.add("calendar", meeting(uid="past", subject="Done", start=soon - timedelta(days=3)))
    assert run_mailbox(sf.uid)["counts"]["events_written"] == 3
    # The organiser cancelled "mine" (it left their calendar); "theirs" and "past" were only removed.
    for uid in ("mine", "theirs", "past"):
        box.add("calendar", Deletion(f"ev-{uid}", Folder.CALENDAR))
    sf.data.reset_calls()
    record = run_mailbox(sf.uid)
    assert record["counts"]["deletions"] == 3 and record["counts"]["events_cancelled"] == 1
    subjects = sorted(e["Subject"] for e in sf.data.all("Event"))
    if action == "mark":
        assert subjects == ["Canceled: Demo", "Done", "Their call"]
    else:
        assert subjects == ["Done", "Their call"]
    # One lookup of the cancelled meeting, one write.
    assert len(sf.data.calls) == 2 and len(sf.data.write_calls) == 1
    # Handled once: the map forgot it, and a run with nothing new makes no call.
    assert services().store.meetings.logged(sf.uid, ["ev-mine", "ev-theirs", "ev-past"]) == {}
    sf.data.reset_calls()
    assert run_mailbox(sf.uid)["salesforce_calls"] == 0


def test_the_meeting_map_holds_ids_and_times_only(sf: SalesforceUser, box: ListMailbox,
                                                   redis_client: redis.Redis) -> None:
    sf.data.add_contact("bob@customer.example")
    soon = datetime.now(tz=UTC) + timedelta(days=2)
    box.add("calendar", meeting(uid="uid-secret-test", subject="Merger talks", start=soon))
    run_mailbox(sf.uid)
    logged = services().store.meetings.logged(sf.uid, ["ev-uid-secret-test"])
    assert logged == {"ev-uid-secret-test": ("uid-secret-test", (soon + timedelta(hours=1)).timestamp() // 1)}
    assert "Merger talks" not in redis_text(redis_client)


def test_mailbox_secrets_write_back_only_while_the_mailbox_is_connected(sf: SalesforceUser) -> None:
    store = services().store
    mailbox = store.mailboxes.get(sf.uid)
    assert mailbox is not None
    secrets = MailboxSecrets(store.secrets, sf.uid, guard=store.mailboxes, generation=mailbox.activated_at)
    assert secrets.put("token", "v1") is True and secrets.get("token") == "v1"
    store.mailboxes.pause(sf.uid)
    assert secrets.put("token", "v2") is True  # paused keeps its credentials fresh
    store.mailboxes.resume(sf.uid)
    store.mailboxes.deactivate(sf.uid)
    assert secrets.get("token") is None
    assert secrets.put("token", "v3") is False and secrets.get("token") is None  # Deactivate stays done
    # Reconnected meanwhile: a run that began before must not overwrite the new credentials.
    store.secrets.put("mailbox", sf.uid, "token", "fresh")
    store.mailboxes.activate(sf.uid, "list", OWNER, [], {})
    assert secrets.put("token", "stale") is False and secrets.get("token") == "fresh"
    # Never activated at all: refused.
    store.mailboxes.ensure("nobody", "00DORG")
    assert MailboxSecrets(store.secrets, "nobody", guard=store.mailboxes).put("token", "x") is False
    assert store.secrets.get("mailbox", "nobody", "token") is None


@pytest.mark.parametrize(("count", "size", "expected"), [
    (1024, 1000, [1024]),  # two EWS pages of 512: one lookup, not a second one for 24 items
    (1250, 1000, [1000, 250]),
    (250, 100, [100, 100, 50]),
    (210, 100, [100, 110]),
    (99, 100, [99]),
    (0, 100, []),
])
def test_batches_keep_a_small_remainder_with_the_last_batch(count: int, size: int, expected: list[int]) -> None:
    chunks = run.batches(list(range(count)), size)
    assert [len(c) for c in chunks] == expected
    assert [i for c in chunks for i in c] == list(range(count))


def test_a_resync_reaches_back_to_the_last_complete_run(sf: SalesforceUser, box: ListMailbox) -> None:
    store = services().store
    before = time.time()
    run_mailbox(sf.uid)
    caught_up = store.mailboxes.get(sf.uid).caught_up_at  # type: ignore[union-attr]
    assert before <= caught_up <= time.time()
    first = box.windows[-1].mail_since.timestamp()
    assert abs(first - (time.time() - 6 * 86400)) < 60  # a first run reads BACKFILL_DAYS

    # Sync stopped for a month (disabled, say), and the mail server then lost the cursors: the
    # re-read reaches back to the last complete run, not just BACKFILL_DAYS.
    month_ago = time.time() - 30 * 86400
    store.mailboxes.update(sf.uid, caught_up_at=month_ago)
    store.mailboxes.clear_cursors(sf.uid)
    run_mailbox(sf.uid)
    assert abs(box.windows[-1].mail_since.timestamp() - (month_ago - 86400)) < 60

    # Deactivating forgets it: a later connection starts with a first run again.
    store.mailboxes.deactivate(sf.uid)
    assert store.mailboxes.get(sf.uid).caught_up_at == 0.0  # type: ignore[union-attr]


def test_unreadable_items_are_counted_with_their_reason(sf: SalesforceUser, box: ListMailbox,
                                                        monkeypatch: Any) -> None:
    contacts(sf, 1)
    inbox(box, 1, people=1)
    original = box.read_changes

    def with_unreadable(*args: Any, **kwargs: Any) -> Any:
        for page in original(*args, **kwargs):
            if page.folder is Folder.INBOX and page.emails:
                page.unreadable = 2
            yield page

    monkeypatch.setattr(box, "read_changes", with_unreadable)
    record = run_mailbox(sf.uid)
    assert record["counts"]["read"] == 3 and record["counts"]["written"] == 1
    assert record["counts"]["filtered_by"]["unreadable"] == 2


def test_the_api_budget_stops_a_large_page_between_its_batches_and_keeps_its_cursor(
        sf: SalesforceUser, box: ListMailbox, monkeypatch: Any) -> None:
    contacts(sf, 10)
    box.page_size = 300
    inbox(box, 300)
    pin_batch_items(monkeypatch, 100)
    sf.data.api_used, sf.data.api_max = 8500, 10_000  # 85 % > 80 %
    record = run_mailbox(sf.uid)
    assert record["stopped"] == "api_budget" and record["counts"]["written"] == 100
    assert "inbox" not in services().store.mailboxes.cursors(sf.uid)  # the page is not done
    done = run_mailbox(sf.uid, interactive=True)
    assert done["counts"]["written"] == 200 and done["counts"]["duplicates"] == 100
    keys = [m["MessageIdentifier"] for m in sf.data.all("EmailMessage")]
    assert len(keys) == len(set(keys)) == 300


def test_a_record_refused_as_transient_every_time_is_quarantined_after_a_few_runs(
        sf: SalesforceUser, box: ListMailbox, monkeypatch: Any) -> None:
    monkeypatch.setattr(refusals, "MAX_TRANSIENT_ATTEMPTS", 3)
    contacts(sf, 3)
    sf.data.rules.append(Rule("EmailMessage", lambda r: r.get("MessageIdentifier") == "<m1@customer.example>",
                              "An unexpected error occurred", code="UNKNOWN_EXCEPTION"))
    sf.data.rules.append(Rule("EmailMessage", lambda r: r.get("MessageIdentifier") == "<m2@customer.example>",
                              "Blocked by rule"))
    inbox(box, 3, people=3)
    store = services().store
    for _ in range(2):
        with pytest.raises(Unavailable, match="UNKNOWN_EXCEPTION"):
            run_mailbox(sf.uid)
        assert "inbox" not in store.mailboxes.cursors(sf.uid)
    record = run_mailbox(sf.uid)
    assert record["status"] == "ok" and record["counts"]["quarantined"] == 2
    assert store.mailboxes.cursors(sf.uid)["inbox"] == "3"
    # Each item once in the quarantine, however many reruns refused it.
    entries = {e["key"]: e["reason"] for e in store.quarantine.recent(sf.uid)}
    m1, m2 = store.quarantine.ref("<m1@customer.example>"), store.quarantine.ref("<m2@customer.example>")
    assert set(entries) == {m1, m2}
    assert "UNKNOWN_EXCEPTION" in entries[m1] and "(on 3 attempts)" in entries[m1]
    assert [m["MessageIdentifier"] for m in sf.data.all("EmailMessage")] == ["<m0@customer.example>"]


def test_a_record_written_after_a_lock_starts_counting_afresh(sf: SalesforceUser, box: ListMailbox,
                                                             monkeypatch: Any) -> None:
    # Found in review: counts outlived the incident, so a later single lock quarantined an update.
    monkeypatch.setattr(refusals, "MAX_TRANSIENT_ATTEMPTS", 3)
    sf.data.add_contact("bob@customer.example")
    box.add("calendar", meeting(uid="m-1", subject="Demo"))
    assert run_mailbox(sf.uid)["counts"]["events_written"] == 1
    sf.data.rules.append(Rule("Event", lambda r: r.get("Subject") == "Demo v2", "locked", code="UNABLE_TO_LOCK_ROW",
                              times=2))
    box.add("calendar", meeting(uid="m-1", subject="Demo v2"))
    for _ in range(2):
        with pytest.raises(Unavailable):
            run_mailbox(sf.uid)
    assert run_mailbox(sf.uid)["counts"]["events_updated"] == 1
    # Weeks later, the next update meets one lock: it is retried, not quarantined.
    sf.data.rules.append(Rule("Event", lambda r: r.get("Subject") == "Demo v3", "locked", code="UNABLE_TO_LOCK_ROW",
                              times=1))
    box.add("calendar", meeting(uid="m-1", subject="Demo v3"))
    with pytest.raises(Unavailable):
        run_mailbox(sf.uid)
    assert run_mailbox(sf.uid)["counts"]["events_updated"] == 1
    assert sf.data.all("Event")[0]["Subject"] == "Demo v3" and services().store.quarantine.recent(sf.uid) == []


def test_a_record_is_never_both_quarantined_and_written(sf: SalesforceUser, box: ListMailbox, monkeypatch: Any) -> None:
    # Found in review: one record out of attempts was quarantined while another failed the run,
    # and the rerun (the same page) wrote it.
    monkeypatch.setattr(refusals, "MAX_TRANSIENT_ATTEMPTS", 3)
    sf.data.add_contact("c0@customer.example")
    sf.data.rules.append(Rule("EmailMessage", lambda r: r.get("MessageIdentifier") == "<m1@x>", "locked",
                              code="UNABLE_TO_LOCK_ROW", times=3))
    sf.data.rules.append(Rule("EmailMessage", lambda r: r.get("MessageIdentifier") == "<m2@x>", "locked",
                              code="UNABLE_TO_LOCK_ROW"))
    box.add("inbox", mail(sender="c0@customer.example", subject="one", message_id="<m1@x>"))
    with pytest.raises(Unavailable):
        run_mailbox(sf.uid)
    box.add("inbox", mail(sender="c0@customer.example", subject="two", message_id="<m2@x>"))
    for _ in range(2):
        with pytest.raises(Unavailable):
            run_mailbox(sf.uid)
    record = run_mailbox(sf.uid)
    store = services().store
    quarantined = {e["key"] for e in store.quarantine.recent(sf.uid)}
    assert [m["MessageIdentifier"] for m in sf.data.all("EmailMessage")] == ["<m1@x>"]
    assert quarantined == {store.quarantine.ref("<m2@x>")} and record["status"] == "ok"


def test_a_record_quarantined_by_a_run_that_stopped_and_written_by_the_rerun_leaves_the_quarantine(
        sf: SalesforceUser, box: ListMailbox, monkeypatch: Any) -> None:
    # Found in review: batch 1 of a page quarantined m1, batch 2 failed the run, the rerun of the
    # page wrote m1; it stayed listed as refused.
    monkeypatch.setattr(refusals, "MAX_TRANSIENT_ATTEMPTS", 3)
    pin_batch_items(monkeypatch, 1)
    sf.data.add_contact("c0@customer.example")
    for key in ("<m1@x>", "<m2@x>"):
        sf.data.rules.append(Rule("EmailMessage", lambda r, k=key: r.get("MessageIdentifier") == k, "locked",
                                  code="UNABLE_TO_LOCK_ROW", times=3))
        box.add("inbox", mail(sender="c0@customer.example", subject=key, message_id=key))
    for _ in range(5):
        try:
            run_mailbox(sf.uid)
        except Unavailable:
            pass
    store = services().store
    quarantined = {e["key"] for e in store.quarantine.recent(sf.uid)}
    written = {m["MessageIdentifier"] for m in sf.data.all("EmailMessage")}
    assert not {k for k in ("<m1@x>", "<m2@x>") if store.quarantine.ref(k) in quarantined and k in written}
    assert written | {k for k in ("<m1@x>", "<m2@x>") if store.quarantine.ref(k) in quarantined} == \
        {"<m1@x>", "<m2@x>"}  # each written or quarantined, none lost


def _lower_bound(records: int, queries: int) -> int:
    """The fewest Composite calls for ``records`` creates and ``queries`` look-ups (25 subrequests a call, 5 of
    them collections of 200 or queries, the other 20 single records)."""
    calls = 1
    while 5 * calls < queries + -(-max(0, records - 20 * calls) // 200):
        calls += 1
    return calls


def test_a_backfill_looks_up_once_and_fills_its_write_calls(sf: SalesforceUser, box: ListMailbox) -> None:
    from backend.connectors.salesforce import EMAIL_LOOKUP_PREFIX, chunk_in_list

    contacts(sf, 10)
    box.page_size = 512  # as EWS pages: cut to fit the batches of 800
    inbox(box, 2000)
    sf.data.reset_calls()
    record = run_mailbox(sf.uid)
    assert record["counts"]["emails_written"] == 2000 and record["counts"]["duplicates"] == 0
    writes = len(sf.data.write_calls)
    # 400 emails a call with their sender relations (the no-split rule): 5 write calls; the look-ups
    # of the second and third batches rode in the first batch's write calls.
    assert writes == 5
    assert len(sf.data.calls) - writes <= 2  # the first batch's look-up (and the org's describe)
    queries = 2 + len(chunk_in_list(EMAIL_LOOKUP_PREFIX, [f"<m{i}@customer.example>" for i in range(2000)],
                                    path="/services/data/v62.0/query"))
    assert record["salesforce_calls"] <= 1.2 * _lower_bound(4000, queries)
    # A second run finds everything and writes nothing.
    sf.data.reset_calls()
    assert run_mailbox(sf.uid)["salesforce_calls"] == 0


def test_the_mailbox_is_read_ahead_while_a_batch_is_written(sf: SalesforceUser, box: ListMailbox,
                                                            monkeypatch: Any) -> None:
    # Batches of 100 from pages of 50: when batch 1 is written, batch 2 is already read (its
    # look-ups ride in batch 1's write) and the reader is on batch 3 without waiting for the write.
    contacts(sf, 10)
    inbox(box, 400)
    pin_batch_items(monkeypatch, 100)
    yielded: list[int] = []
    original_read = box.read_changes

    def counting(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for page in original_read(*args, **kwargs):
            yielded.append(len(page.emails))
            yield page

    monkeypatch.setattr(box, "read_changes", counting)
    original_write = MailboxRun.write
    seen_at_first_write: list[int] = []

    def write(self: MailboxRun, emails: Any, events: Any) -> None:
        if not seen_at_first_write:
            deadline = time.monotonic() + 5
            while sum(yielded) <= 200 and time.monotonic() < deadline:
                time.sleep(0.01)
            seen_at_first_write.append(sum(yielded))
        original_write(self, emails, events)

    monkeypatch.setattr(MailboxRun, "write", write)
    record = run_mailbox(sf.uid)
    assert seen_at_first_write[0] > 200  # read beyond the two batches the run holds
    assert seen_at_first_write[0] <= 200 + 100 + 50  # at most a batch (and a page) waits
    assert record["counts"]["written"] == 400
    assert services().store.mailboxes.cursors(sf.uid)["inbox"] == "400"
    assert box.closed
