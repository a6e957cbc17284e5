"""What every Mailbox connector must do, checked against each provider's fake (``mailbox_harness``).

Provider-agnostic: only the Mailbox protocol and the harness are used, never a vendor detail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from backend.connectors.mailbox import (
    MAX_BODY_CHARS,
    ChangePage,
    EmailItem,
    EventItem,
    Folder,
    Mailbox,
    Sensitivity,
    SyncWindow,
)
from backend.errors import AuthRevoked, Throttled, Unavailable
from sandbox.harness import MailboxHarness

CUSTOMER = "carol@customer.example"
PARTNER = "dave@partner.example"


@dataclass
class Seeded:
    """Ids of what a test put in the mailbox."""

    emails: dict[str, str] = field(default_factory=dict)  # subject -> remote id
    events: dict[str, str] = field(default_factory=dict)


@dataclass
class Read:
    """Everything one ``read_changes`` returned, flattened."""

    pages: list[ChangePage]

    @property
    def emails(self) -> list[EmailItem]:
        return [e for p in self.pages for e in p.emails]

    @property
    def events(self) -> list[EventItem]:
        return [e for p in self.pages for e in p.events]

    @property
    def deleted(self) -> set[str]:
        return {d.remote_id for p in self.pages for d in p.deletions}

    def cursors(self) -> dict[str, str]:
        """The cursor of each folder's last page."""
        return {p.folder.value: p.cursor for p in self.pages}

    def email(self, subject: str) -> EmailItem:
        matches = [e for e in self.emails if e.subject == subject]
        assert len(matches) == 1, f"{subject!r}: {[e.subject for e in self.emails]}"
        return matches[0]

    def event(self, subject: str) -> EventItem:
        matches = [e for e in self.events if e.subject == subject]
        assert len(matches) == 1, f"{subject!r}: {[e.subject for e in self.events]}"
        return matches[0]


def _window(now: datetime) -> SyncWindow:
    return SyncWindow.starting(now, backfill_days=6)


def _read(mailbox: Mailbox, cursors: dict[str, str] | None = None, now: datetime | None = None,
          folders: Iterable[Folder] = tuple(Folder)) -> Read:
    return Read(list(mailbox.read_changes(cursors or {}, _window(now or datetime.now(UTC)), tuple(folders))))


def _seed(h: MailboxHarness, now: datetime) -> Seeded:
    seeded = Seeded()
    seeded.emails["Quote for Q3"] = h.add_email(
        "inbox", subject="Quote for Q3", sender=CUSTOMER, to=[h.address], cc=[PARTNER],
        body="Please find the quote attached.", message_id="<quote-q3@customer.example>",
        when=now - timedelta(days=1))
    seeded.emails["Lunch?"] = h.add_email(
        "inbox", subject="Lunch?", sender=PARTNER, to=[h.address], body="Are you free?",
        message_id="<lunch@partner.example>", when=now - timedelta(hours=5))
    seeded.emails["Personal matter"] = h.add_email(
        "inbox", subject="Personal matter", sender=CUSTOMER, to=[h.address], body="private",
        message_id="<private@customer.example>", when=now - timedelta(hours=3), sensitivity="private")
    seeded.emails["Re: Quote for Q3"] = h.add_email(
        "sent", subject="Re: Quote for Q3", sender=h.address, to=[CUSTOMER], body="Thanks, signed.",
        message_id="<re-quote@acme.example>", when=now - timedelta(hours=2))
    seeded.emails["Ancient history"] = h.add_email(
        "inbox", subject="Ancient history", sender=CUSTOMER, to=[h.address], body="old",
        message_id="<ancient@customer.example>", when=now - timedelta(days=40))
    seeded.events["Kick-off"] = h.add_event(
        subject="Kick-off", start=now + timedelta(days=2), end=now + timedelta(days=2, hours=1),
        organizer=h.address, attendees=[CUSTOMER, PARTNER], uid="kickoff-uid-1", body="Agenda: scope")
    seeded.events["Review"] = h.add_event(
        subject="Review", start=now - timedelta(days=3), end=now - timedelta(days=3) + timedelta(minutes=30),
        organizer=CUSTOMER, attendees=[h.address], uid="review-uid-2")
    seeded.events["Doctor"] = h.add_event(
        subject="Doctor", start=now + timedelta(days=1), end=now + timedelta(days=1, hours=1),
        organizer=h.address, attendees=[], uid="doctor-uid-3", sensitivity="private")
    seeded.events["Last quarter offsite"] = h.add_event(
        subject="Last quarter offsite", start=now - timedelta(days=60), end=now - timedelta(days=60, hours=-8),
        organizer=CUSTOMER, attendees=[h.address], uid="offsite-uid-4")
    return seeded


def _close_to(value: datetime | None, expected: datetime, seconds: float = 120) -> bool:
    return value is not None and abs((value - expected).total_seconds()) <= seconds


def test_identity_is_primary_address_and_aliases(mailbox_harness: MailboxHarness) -> None:
    identity = mailbox_harness.connector().identity()
    assert identity.primary == mailbox_harness.address
    assert mailbox_harness.aliases <= identity.aliases
    assert all(identity.matches(a.upper()) for a in mailbox_harness.aliases)
    assert not identity.matches("mallory@acme.example")


def test_reads_the_seeded_mailbox_in_full(mailbox_harness: MailboxHarness) -> None:
    h, now = mailbox_harness, datetime.now(UTC)
    seeded = _seed(h, now)
    read = _read(h.connector(), now=now)

    assert {e.subject for e in read.emails} == {"Quote for Q3", "Lunch?", "Personal matter", "Re: Quote for Q3"}
    quote = read.email("Quote for Q3")
    assert quote.remote_id == seeded.emails["Quote for Q3"]
    assert quote.folder is Folder.INBOX
    assert quote.message_id == "<quote-q3@customer.example>"
    assert quote.sender is not None and quote.sender.email == CUSTOMER
    assert [a.email for a in quote.to] == [h.address]
    assert [a.email for a in quote.cc] == [PARTNER]
    assert quote.body_text.strip() == "Please find the quote attached."
    assert _close_to(quote.received_at, now - timedelta(days=1))
    assert quote.sent_at is not None and quote.sensitivity is Sensitivity.NORMAL
    reply = read.email("Re: Quote for Q3")
    assert reply.folder is Folder.SENT and [a.email for a in reply.to] == [CUSTOMER]

    assert {e.subject for e in read.events} == {"Kick-off", "Review", "Doctor"}
    kickoff = read.event("Kick-off")
    assert kickoff.remote_id == seeded.events["Kick-off"]
    assert kickoff.uid == "kickoff-uid-1" and kickoff.dedup_key == "kickoff-uid-1"
    assert _close_to(kickoff.start, now + timedelta(days=2)) and kickoff.duration == timedelta(hours=1)
    assert kickoff.organizer is not None and kickoff.organizer.email == h.address
    assert {a.email for a in kickoff.attendees} == {CUSTOMER, PARTNER}
    assert kickoff.body_text.strip() == "Agenda: scope"
    assert not kickoff.is_cancelled and not kickoff.is_recurring

    # Every folder reports its pages, the last one flagged, each with a cursor.
    for folder in Folder:
        pages = [p for p in read.pages if p.folder is folder]
        assert pages and pages[-1].last and all(p.cursor for p in pages)
        assert not any(p.resynced for p in pages)


def test_private_items_are_reported_with_their_sensitivity(mailbox_harness: MailboxHarness) -> None:
    h, now = mailbox_harness, datetime.now(UTC)
    _seed(h, now)
    read = _read(h.connector(), now=now)
    # The engine filters private items; the connector must report them so it can.
    assert read.email("Personal matter").sensitivity is Sensitivity.PRIVATE
    assert read.event("Doctor").sensitivity is Sensitivity.PRIVATE


def test_then_only_the_changes(mailbox_harness: MailboxHarness) -> None:
    h, now = mailbox_harness, datetime.now(UTC)
    seeded = _seed(h, now)
    first = _read(h.connector(), now=now)

    nothing = _read(h.connector(), first.cursors(), now=now)
    assert nothing.emails == [] and nothing.events == [] and nothing.deleted == set()

    h.add_email("inbox", subject="New order", sender=CUSTOMER, to=[h.address], body="Ten more please",
                message_id="<order@customer.example>")
    h.delete_email(seeded.emails["Lunch?"])
    h.update_event(seeded.events["Kick-off"], subject="Kick-off (moved)", start=now + timedelta(days=3),
                   end=now + timedelta(days=3, hours=2))
    h.cancel_event(seeded.events["Review"])
    h.delete_event(seeded.events["Doctor"])

    second = _read(h.connector(), first.cursors(), now=now)
    assert [e.subject for e in second.emails] == ["New order"]
    assert second.email("New order").message_id == "<order@customer.example>"
    assert second.deleted == {seeded.emails["Lunch?"], seeded.events["Doctor"]}
    moved = [e for e in second.events if e.remote_id == seeded.events["Kick-off"]]
    assert len(moved) == 1 and moved[0].subject == "Kick-off (moved)" and moved[0].uid == "kickoff-uid-1"
    assert moved[0].duration == timedelta(hours=2)
    cancelled = [e for e in second.events if e.remote_id == seeded.events["Review"]]
    assert len(cancelled) == 1 and cancelled[0].is_cancelled
    assert len(second.events) == 2

    third = _read(h.connector(), second.cursors(), now=now)
    assert third.emails == [] and third.events == [] and third.deleted == set()


def test_cursors_are_per_folder(mailbox_harness: MailboxHarness) -> None:
    h, now = mailbox_harness, datetime.now(UTC)
    _seed(h, now)
    first = _read(h.connector(), now=now)
    cursors = first.cursors()
    assert set(cursors) == {"inbox", "sent", "calendar"}
    assert len(set(cursors.values())) == 3

    h.add_email("sent", subject="Proposal", sender=h.address, to=[CUSTOMER], body="See attached")
    only_sent = _read(h.connector(), cursors, now=now, folders=[Folder.SENT])
    assert {p.folder for p in only_sent.pages} == {Folder.SENT}
    assert [e.subject for e in only_sent.emails] == ["Proposal"]

    # The inbox cursor is untouched by reading Sent Items; a missing calendar cursor reads the window.
    rest = _read(h.connector(), {"inbox": cursors["inbox"]}, now=now, folders=[Folder.INBOX, Folder.CALENDAR])
    assert rest.emails == []
    assert {e.subject for e in rest.events} == {"Kick-off", "Review", "Doctor"}


def test_revoked_credentials_raise_auth_revoked(mailbox_harness: MailboxHarness) -> None:
    h, now = mailbox_harness, datetime.now(UTC)
    _seed(h, now)
    cursors = _read(h.connector(), now=now).cursors()
    h.revoke_credentials()
    with pytest.raises(AuthRevoked):
        _read(h.connector(), cursors, now=now)
    with pytest.raises(AuthRevoked):
        h.connector().identity()


def test_throttling_raises_throttled_with_the_servers_hint(mailbox_harness: MailboxHarness) -> None:
    h, now = mailbox_harness, datetime.now(UTC)
    _seed(h, now)
    connector = h.connector()
    connector.identity()  # connected; the next request is throttled
    h.inject_failure("throttle", retry_after=7)
    with pytest.raises(Throttled) as caught:
        _read(connector, now=now)
    assert caught.value.retry_after == pytest.approx(7, abs=0.01)
    # The failure was transient: the next read works.
    assert {e.subject for e in _read(h.connector(), now=now).emails}


def test_an_unavailable_server_raises_unavailable(mailbox_harness: MailboxHarness) -> None:
    h, now = mailbox_harness, datetime.now(UTC)
    _seed(h, now)
    connector = h.connector()
    connector.identity()
    h.inject_failure("unavailable")
    with pytest.raises(Unavailable):
        _read(connector, now=now)


def test_expired_cursors_resync_within_the_window(mailbox_harness: MailboxHarness) -> None:
    h, now = mailbox_harness, datetime.now(UTC)
    _seed(h, now)
    first = _read(h.connector(), now=now)
    h.add_email("inbox", subject="While away", sender=CUSTOMER, to=[h.address], body="ping")
    h.expire_cursors()

    again = _read(h.connector(), first.cursors(), now=now)
    assert again.pages and all(p.resynced for p in again.pages)
    subjects = {e.subject for e in again.emails}
    assert "While away" in subjects
    assert "Ancient history" not in subjects  # bounded by the window, not the whole mailbox
    assert {e.subject for e in again.events} == {"Kick-off", "Review", "Doctor"}
    keys = Counter([e.dedup_key for e in again.emails] + [e.dedup_key for e in again.events])
    assert all(n == 1 for n in keys.values()), keys
    window = _window(now)
    assert all(e.when is not None and e.when >= window.mail_since for e in again.emails)

    # The new cursors work as usual afterwards.
    after = _read(h.connector(), again.cursors(), now=now)
    assert after.emails == [] and after.events == [] and not any(p.resynced for p in after.pages)


def test_bodies_are_bounded(mailbox_harness: MailboxHarness) -> None:
    h, now = mailbox_harness, datetime.now(UTC)
    h.add_email("inbox", subject="Huge", sender=CUSTOMER, to=[h.address], body="x" * (MAX_BODY_CHARS * 3))
    h.add_event(subject="Long agenda", start=now + timedelta(days=1), end=now + timedelta(days=1, hours=1),
                organizer=CUSTOMER, attendees=[h.address], body="y" * (MAX_BODY_CHARS * 2))
    read = _read(h.connector(), now=now)
    huge, agenda = read.email("Huge"), read.event("Long agenda")
    assert len(huge.body_text) <= MAX_BODY_CHARS and huge.truncated
    assert len(agenda.body_text) <= MAX_BODY_CHARS and agenda.truncated


def test_calls_are_counted(mailbox_harness: MailboxHarness) -> None:
    h, now = mailbox_harness, datetime.now(UTC)
    _seed(h, now)
    connector = h.connector()
    before = h.request_count()
    _read(connector, now=now)
    assert connector.calls == h.request_count() - before > 0


NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("caught_up_days_ago", "expected_days"),
    [(None, 6), (2, 6), (30, 31), (89, 90), (200, 90)],
)
def test_the_window_reaches_back_to_the_last_complete_run_within_bounds(caught_up_days_ago: int | None,
                                                                        expected_days: int) -> None:
    caught_up = (NOW - timedelta(days=caught_up_days_ago)).timestamp() if caught_up_days_ago is not None else 0.0
    window = SyncWindow.starting(NOW, 6, caught_up)
    assert window.mail_since == NOW - timedelta(days=expected_days)
    assert window.events_from == NOW - timedelta(days=14)
