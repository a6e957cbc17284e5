"""Two colleagues' mailboxes holding the same emails, and runs that broke half-way.

Salesforce does not keep ``EmailMessage.MessageIdentifier`` unique, so the engine claims each
email key in Redis while it looks it up and writes it. These tests run two mailboxes' runs at the
same time against the wire-level fake Salesforce (slow writes widen the window the reviewer found),
and check that exactly one EmailMessage, with its relations, comes out. The mailbox side is the
in-memory :class:`ListMailbox` (real connectors are in ``tests/jobs``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.connectors.mailbox import Folder
from backend.extensions import services
from backend.sync import claims
from backend.sync.claims import ClaimWaitTimeout
from sandbox.login import login
from tests.runs import pin_batch_items, run_mailbox
from tests.sfhelpers import SalesforceUser, log_in
from tests.sync.items import NOW, OWNER, ListMailbox, mail

BOB = "bob@acme.example"
CONTACT = "carol@customer.example"


@dataclass
class Colleagues:
    """Alice (mailbox OWNER) and Bob (mailbox BOB), same org, each with a running list mailbox."""

    app: Flask
    alice: SalesforceUser
    bob_uid: str
    boxes: dict[str, ListMailbox]

    @property
    def data(self) -> Any:
        """The fake org's data."""
        return self.alice.data

    def box(self, uid: str) -> ListMailbox:
        """A user's mailbox."""
        return self.boxes[uid]

    def run_both(self) -> dict[str, dict[str, Any] | BaseException]:
        """Run both mailboxes at the same time, each in its own thread and app context."""
        outcome: dict[str, dict[str, Any] | BaseException] = {}
        start = threading.Barrier(2)

        def run(uid: str) -> None:
            with self.app.app_context():
                start.wait()
                try:
                    outcome[uid] = run_mailbox(uid, interactive=True)
                except BaseException as exc:  # collected: the test asserts on it
                    outcome[uid] = exc

        threads = [threading.Thread(target=run, args=(uid,)) for uid in (self.alice.uid, self.bob_uid)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        return outcome


@pytest.fixture
def team(app: Flask, client: FlaskClient, ca: Any, fake_salesforce: Any) -> Iterator[Colleagues]:
    """Alice and Bob logged in through the real dialog, sync running for both."""
    alice = log_in(app, client, ca.ca_path, fake_salesforce)
    fake_salesforce.state.add_user(BOB, "bob-pw", email=BOB, name="Bob Example")
    bob = login(app.test_client(), ca.ca_path, mailbox=BOB, username=BOB, password="bob-pw")
    boxes = {alice.uid: ListMailbox(), bob.uid: ListMailbox()}
    with app.app_context():
        svc = services()
        svc.clients.mailbox_factory = lambda provider, ctx: boxes[ctx.mailbox_id]
        svc.store.mailboxes.activate(alice.uid, "list", OWNER, [], {})
        svc.store.mailboxes.activate(bob.uid, "list", BOB, [], {})
        alice.data.reset_calls()
        yield Colleagues(app, alice, bob.uid, boxes)


def shared(index: int = 0) -> Any:
    """An email from the contact to both colleagues (each has a copy in their Inbox)."""
    return mail(sender=CONTACT, to=(OWNER, BOB), subject=f"Shared {index}", message_id=f"<shared-{index}@customer>")


def relations_of(team: Colleagues, message_id: str) -> list[tuple[str, str]]:
    """(relation id, type) of the EmailMessage with ``message_id``."""
    (message,) = [m for m in team.data.all("EmailMessage") if m["MessageIdentifier"] == message_id]
    return sorted((r["RelationId"], r["RelationType"]) for r in team.data.all("EmailMessageRelation")
                  if r["EmailMessageId"] == message["Id"])


def sf_user_id(uid: str) -> str:
    """The Salesforce user id of one of our users."""
    user = services().store.users.get(uid)
    assert user is not None
    return user.sf_user_id


def test_overlapping_runs_with_the_same_email_write_it_once(team: Colleagues) -> None:
    contact = team.data.add_contact(CONTACT)
    for uid in (team.alice.uid, team.bob_uid):
        team.box(uid).add("inbox", shared(0))
        # And one email each only they have.
        team.box(uid).add("inbox", mail(sender=CONTACT, to=(OWNER if uid == team.alice.uid else BOB,),
                                        message_id=f"<own-{uid}@customer>"))
    team.data.write_delay = 0.5  # both lookups would happen before either write: the reviewer's window
    outcome = team.run_both()
    records = [outcome[team.alice.uid], outcome[team.bob_uid]]
    assert all(isinstance(r, dict) and r["status"] == "ok" for r in records), records
    keys = sorted(m["MessageIdentifier"] for m in team.data.all("EmailMessage"))
    assert keys == sorted(["<shared-0@customer>", f"<own-{team.alice.uid}@customer>",
                           f"<own-{team.bob_uid}@customer>"])
    counts = [r["counts"] for r in records if isinstance(r, dict)]
    assert sorted(c["emails_written"] for c in counts) == [1, 2]  # one of them wrote the shared email
    assert sorted(c["duplicates"] for c in counts) == [0, 1]  # the other found it written
    assert sum(c["claim_waits"] for c in counts) >= 1
    # Exactly the winner's relations: the contact as sender, the winner's user as recipient.
    winner = team.alice.uid if counts[0]["emails_written"] == 2 else team.bob_uid
    assert relations_of(team, "<shared-0@customer>") == sorted([(contact, "FromAddress"),
                                                               (sf_user_id(winner), "ToAddress")])
    # Every claim was released.
    assert not services().store.redis.keys(services().store.keys("claim", "*"))


def test_many_shared_emails_in_both_orders_are_each_written_once(team: Colleagues, monkeypatch: Any) -> None:
    team.data.add_contact(CONTACT)
    pin_batch_items(monkeypatch, 20)
    for i in range(60):
        team.box(team.alice.uid).add("inbox", shared(i))
        team.box(team.bob_uid).add("inbox", shared(59 - i))  # Bob reads them the other way round
    team.data.write_delay = 0.2
    outcome = team.run_both()
    assert all(isinstance(r, dict) and r["status"] == "ok" for r in outcome.values()), outcome
    keys = [m["MessageIdentifier"] for m in team.data.all("EmailMessage")]
    assert len(keys) == len(set(keys)) == 60
    froms = [r for r in team.data.all("EmailMessageRelation") if r["RelationType"] == "FromAddress"]
    assert len(froms) == 60
    counts = [r["counts"] for r in outcome.values() if isinstance(r, dict)]
    assert sum(c["emails_written"] for c in counts) == 60 and sum(c["duplicates"] for c in counts) == 60


def test_a_claim_held_too_long_fails_the_run_transiently_and_keeps_the_cursor(team: Colleagues,
                                                                             monkeypatch: Any) -> None:
    team.data.add_contact(CONTACT)
    store = services().store
    org = team.alice.user().org_id
    # Bob's run holds the shared email (and does not finish in time).
    assert store.claims.claim(org, ["<shared-0@customer>"], f"{team.bob_uid}:stuck", 600) == set()
    box = team.box(team.alice.uid)
    box.add("inbox", shared(0))
    box.add("inbox", mail(sender=CONTACT, message_id="<alone@customer>"))
    monkeypatch.setattr(claims, "CLAIM_WAIT_SECONDS", 0.6)
    started = time.monotonic()
    with pytest.raises(ClaimWaitTimeout) as info:
        run_mailbox(team.alice.uid)
    assert 0.5 <= time.monotonic() - started < 10
    assert info.value.transient and info.value.code == "emails_claimed_elsewhere"
    # What it could write, it wrote; the held email was not touched; the batch's cursor stayed.
    assert [m["MessageIdentifier"] for m in team.data.all("EmailMessage")] == ["<alone@customer>"]
    assert "inbox" not in store.mailboxes.cursors(team.alice.uid)
    # Bob's run failed without writing it and let go: Alice's next run writes it, and only it.
    store.claims.release(org, ["<shared-0@customer>"], f"{team.bob_uid}:stuck")
    record = run_mailbox(team.alice.uid)
    assert record["counts"]["emails_written"] == 1 and record["counts"]["duplicates"] == 1
    assert sorted(m["MessageIdentifier"] for m in team.data.all("EmailMessage")) == [
        "<alone@customer>", "<shared-0@customer>"]


def test_a_waiting_run_writes_an_email_the_holder_released_without_writing(team: Colleagues) -> None:
    team.data.add_contact(CONTACT)
    store = services().store
    org = team.alice.user().org_id
    store.claims.claim(org, ["<shared-0@customer>"], f"{team.bob_uid}:failing", 600)
    threading.Timer(0.5, store.claims.release, args=(org, ["<shared-0@customer>"],
                                                           f"{team.bob_uid}:failing")).start()
    team.box(team.alice.uid).add("inbox", shared(0))
    record = run_mailbox(team.alice.uid)
    assert record["counts"]["emails_written"] == 1 and record["counts"]["claim_waits"] == 1
    assert len(team.data.all("EmailMessage")) == 1


def test_claims_left_by_a_dead_run_of_the_same_mailbox_are_taken_over(team: Colleagues) -> None:
    team.data.add_contact(CONTACT)
    store = services().store
    # A run of Alice's mailbox was killed after claiming (its claims live for CLAIM_TTL_SECONDS).
    store.claims.claim(team.alice.user().org_id, ["<shared-0@customer>"], f"{team.alice.uid}:killed", 600)
    team.box(team.alice.uid).add("inbox", shared(0))
    record = run_mailbox(team.alice.uid)
    assert record["counts"]["emails_written"] == 1 and record["counts"]["claim_waits"] == 0


def test_email_without_message_id_sent_by_one_and_received_by_the_other_is_logged_once(team: Colleagues) -> None:
    # No Message-ID: the stand-in key hashes sender, sent time and subject. The recipient's copy
    # arrived seconds after it was sent (received time differs), so the key must use the sent time.
    team.data.add_contact(CONTACT)
    sent = NOW - timedelta(hours=1)
    team.box(team.alice.uid).add("sent", mail(sender=OWNER, to=(BOB, CONTACT), subject="Pricing", message_id="",
                                              folder=Folder.SENT, when=sent))
    team.box(team.bob_uid).add("inbox", mail(sender=OWNER, to=(BOB, CONTACT), subject="Pricing", message_id="",
                                             folder=Folder.INBOX, when=sent, received=sent + timedelta(seconds=7)))
    first = run_mailbox(team.alice.uid)
    second = run_mailbox(team.bob_uid)
    assert first["counts"]["emails_written"] == 1
    assert second["counts"]["emails_written"] == 0 and second["counts"]["duplicates"] == 1
    assert len(team.data.all("EmailMessage")) == 1
