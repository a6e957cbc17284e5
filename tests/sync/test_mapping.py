"""Mapping items to CRM drafts: roles, the owner, odd text, bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend.connectors.crm import Person, PersonKind
from backend.connectors.mailbox import EmailItem, Folder, synthetic_message_id
from backend.sync.filters import Filters
from backend.sync.mapping import MAX_EVENT_CONTACTS, clean_line, clean_text, email_draft, event_draft
from tests.sync.items import NOW, OWNER, mail, meeting

OWNER_ID = "005OWNER0000000AAA"
BOB = Person("003BOB", PersonKind.CONTACT, "bob@customer.example")
CAROL = Person("00QCAROL", PersonKind.LEAD, "carol@prospect.example")
PEOPLE = {p.email: p for p in (BOB, CAROL)}
FILTERS = Filters.build([OWNER], [], [], [])


def test_incoming_email_roles() -> None:
    draft = email_draft(mail(to=(OWNER, "carol@prospect.example"), cc=("x@other.example",)), PEOPLE, FILTERS,
                        OWNER_ID)
    assert draft is not None
    assert draft.outgoing is False
    assert draft.from_id == BOB.id
    assert draft.to_ids == [CAROL.id, OWNER_ID]
    assert draft.cc_ids == [] and draft.bcc_ids == []
    assert draft.to_addresses == [] and draft.cc_addresses == ["x@other.example"]
    assert draft.people_ids == [BOB.id, CAROL.id]


def test_outgoing_email_roles() -> None:
    item = mail(sender=OWNER, to=("bob@customer.example",), cc=("carol@prospect.example",), folder=Folder.SENT)
    draft = email_draft(item, PEOPLE, FILTERS, OWNER_ID)
    assert draft is not None and draft.outgoing
    assert draft.from_id == OWNER_ID and draft.to_ids == [BOB.id] and draft.cc_ids == [CAROL.id]


def test_owner_not_listed_is_bcc() -> None:
    draft = email_draft(mail(to=("carol@prospect.example",)), PEOPLE, FILTERS, OWNER_ID)
    assert draft is not None and draft.bcc_ids == [OWNER_ID]


def test_no_match_is_none() -> None:
    assert email_draft(mail(sender="nobody@else.example"), PEOPLE, FILTERS, OWNER_ID) is None


def test_missing_message_id_uses_a_stable_hash() -> None:
    # The sender's Sent copy and a recipient's Inbox copy: same sent time, different received time.
    sent = mail(message_id="", subject="No id", folder=Folder.SENT, remote_id="sent-copy")
    received = mail(message_id="", subject="No id", remote_id="inbox-copy", received=NOW + timedelta(seconds=9))
    assert received.received_at != sent.received_at
    assert sent.dedup_key == received.dedup_key == synthetic_message_id(sent.sender, sent.sent_at, "No id")
    draft = email_draft(received, PEOPLE, FILTERS, OWNER_ID)
    assert draft is not None and draft.key == received.dedup_key
    assert mail(message_id="", subject="Other").dedup_key != sent.dedup_key


@pytest.mark.parametrize("raw, expected", [
    ("plain", "plain"),
    ("nul\x00byte", "nulbyte"),
    ("bell\x07 and esc\x1b", "bell and esc"),
    ("keep\ttabs\nand lines", "keep\ttabs\nand lines"),
    ("broken \udcff surrogate", "broken ? surrogate"),
    ("émoji 🎉 ok", "émoji 🎉 ok"),
    ("", ""),
    (None, ""),
])
def test_clean_text(raw: str | None, expected: str) -> None:
    assert clean_text(raw) == expected


def test_clean_line_folds_line_breaks() -> None:
    assert clean_line("Re:\r\n  quote\tfor you") == "Re: quote for you"


def test_odd_charset_subject_and_body_survive() -> None:
    raw = "Angebot f\udcfcr Sie".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    draft = email_draft(mail(subject=raw, body=raw + "\x00"), PEOPLE, FILTERS, OWNER_ID)
    assert draft is not None
    draft.subject.encode("utf-8")  # encodable
    assert "\x00" not in draft.body


def test_thousands_of_recipients_keep_every_matched_person() -> None:
    people = {f"r{i}@customer.example": Person(f"003R{i}", PersonKind.CONTACT, f"r{i}@customer.example")
              for i in range(3000)}
    item = mail(to=tuple(people), cc=("x@other.example",))
    draft = email_draft(item, people, FILTERS, OWNER_ID)
    assert draft is not None and len(draft.to_ids) == 3000 and draft.to_addresses == []


def test_upper_case_addresses_match() -> None:
    item = EmailItem(remote_id="1", folder=Folder.INBOX, message_id="<x@y>", sender=mail(sender="BOB@Customer.Example")
                     .sender, to=mail().to)
    draft = email_draft(item, PEOPLE, FILTERS, OWNER_ID)
    assert draft is not None and draft.from_id == BOB.id


def test_event_without_end_is_a_point_in_time() -> None:
    draft = event_draft(meeting(hours=None), PEOPLE, FILTERS)
    assert draft is not None and draft.start == draft.end == NOW


def test_event_ending_before_start() -> None:
    draft = event_draft(meeting(hours=-2), PEOPLE, FILTERS)
    assert draft is not None and draft.end == draft.start


def test_event_people_and_unmatched() -> None:
    # A lead cannot share a meeting with contacts (Shared Activities): the contact is kept.
    draft = event_draft(meeting(attendees=("carol@prospect.example", "bob@customer.example")), PEOPLE, FILTERS)
    assert draft is not None and draft.people_ids == [BOB.id]
    alone = event_draft(meeting(attendees=("carol@prospect.example",)), PEOPLE, FILTERS)
    assert alone is not None and alone.people_ids == [CAROL.id]
    assert event_draft(meeting(attendees=("nobody@x.example",)), PEOPLE, FILTERS) is None
    kept = event_draft(meeting(attendees=("nobody@x.example",)), PEOPLE, FILTERS, allow_unmatched=True)
    assert kept is not None and kept.people_ids == []


def _crowd(contacts: int, leads: int) -> dict[str, Person]:
    """``contacts`` Contacts then ``leads`` Leads, by address."""
    people = [Person(f"003{n:012d}AAA", PersonKind.CONTACT, f"c{n}@customer.example") for n in range(contacts)]
    people += [Person(f"00Q{n:012d}AAA", PersonKind.LEAD, f"l{n}@prospect.example") for n in range(leads)]
    return {p.email: p for p in people}


@pytest.mark.parametrize(("contacts", "leads", "lead_first", "expected"), [
    (1, 1, True, "contacts"),  # a lead with a contact: the contact alone
    (0, 2, False, "one lead"),  # two leads: the first listed
    (MAX_EVENT_CONTACTS + 1, 0, False, "contacts"),  # 51 contacts: the first 50
    (3, 0, False, "contacts"),  # contacts only: all of them
])
def test_event_people_follow_the_shared_activities_rule(contacts: int, leads: int, lead_first: bool,
                                                        expected: str) -> None:
    people = _crowd(contacts, leads)
    addresses = list(people)
    if lead_first:
        addresses.reverse()
    # The organizer is listed first by the item (participants: organizer, then attendees).
    draft = event_draft(meeting(attendees=tuple(addresses[1:]), organizer=addresses[0]), people, FILTERS)
    assert draft is not None
    in_order = [people[a].id for a in addresses]
    if expected == "one lead":
        assert draft.people_ids == in_order[:1]
    else:
        wanted = [i for i in in_order if i.startswith("003")][:MAX_EVENT_CONTACTS]
        assert draft.people_ids == wanted and len(wanted) == min(contacts, MAX_EVENT_CONTACTS)


def test_event_without_start_is_none() -> None:
    assert event_draft(meeting(start=None), PEOPLE, FILTERS, allow_unmatched=True) is None


def test_recurring_occurrences_have_distinct_keys() -> None:
    base = meeting(uid="series-1")
    first = base.__class__(**{**base.__dict__, "occurrence_start": NOW})
    second = base.__class__(**{**base.__dict__, "occurrence_start": NOW + timedelta(days=7)})
    assert first.dedup_key != second.dedup_key and first.dedup_key.startswith("series-1@")
