"""Mapping mail items to CRM drafts: who is sender and recipient as CRM records, and clean text.

The connector applies Salesforce's field lengths; this module decides meaning: which matched
people are To, Cc or the sender, where the owner (the mailbox's Salesforce user) stands, that an
event without an end is a point in time, and that text reaching the CRM holds no control
characters or broken surrogates (mail in odd charsets decodes into those).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from backend.connectors.crm import EmailDraft, EventDraft, Person, PersonKind
from backend.connectors.mailbox import Address, EmailItem, EventItem, Folder, valid_text
from backend.sync.filters import Filters
from backend.sync.match import people_of

# C0 controls other than tab, newline and carriage return, and DEL: Salesforce refuses some,
# and none of them means anything in a subject or a plain-text body.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Shared Activities relates an event to up to 50 contacts or one lead (EventRelation, object
# reference); a lead beside contacts, a second lead or a 51st contact is refused row by row.
MAX_EVENT_CONTACTS = 50


def clean_text(value: str | None) -> str:
    """Text safe to send: lone surrogates replaced, control characters removed."""
    if not value:
        return ""
    # A string decoded with errors="surrogateescape" (odd charsets) holds lone surrogates that
    # cannot be encoded as UTF-8; they are replaced instead of failing the whole batch.
    return _CONTROL.sub("", valid_text(value))


def clean_line(value: str | None) -> str:
    """One-line text (subjects, names, locations): line breaks become spaces."""
    return " ".join(clean_text(value).split())


def is_outgoing(item: EmailItem, filters: Filters) -> bool:
    """Sent by the mailbox's owner (Sent Items, or the owner as sender)."""
    return item.folder is Folder.SENT or (item.sender is not None and filters.is_own(item.sender.email))


def _ids(addresses: tuple[Address, ...], linked: Mapping[str, Person]) -> list[str]:
    """The ids of the people ``addresses`` are linked to, in order, each once."""
    ids: dict[str, None] = {}
    for address in addresses:
        person = linked.get(address.email)
        if person is not None:
            ids[person.id] = None
    return list(ids)


def _unmatched(addresses: tuple[Address, ...], linked: Mapping[str, Person], filters: Filters) -> list[str]:
    """Addresses not linked by id (Salesforce wants linked people only in the *Ids lists)."""
    return [a.email for a in addresses if a.email not in linked and not filters.is_own(a.email)]


def email_draft(item: EmailItem, people: Mapping[str, Person], filters: Filters, owner_id: str) -> EmailDraft | None:
    """The draft of an email, or None when none of its participants is a Contact or Lead."""
    # Each participant's matched person, worked out once (blocked and internal ones never): the
    # To, Cc, sender and unmatched lists below are read from it.
    linked: dict[str, Person] = {}
    for address in item.participants:
        person = people.get(address.email)
        if person is not None and filters.is_matchable(address.email):
            linked[address.email] = person
    if not linked:
        return None
    people_ids = list(dict.fromkeys(p.id for p in linked.values()))
    outgoing = is_outgoing(item, filters)
    to_ids = _ids(item.to, linked)
    cc_ids = [i for i in _ids(item.cc, linked) if i not in to_ids]
    bcc_ids: list[str] = []
    from_id = ""
    sender = item.sender
    if outgoing:
        from_id = owner_id
    else:
        found = linked.get(sender.email) if sender is not None else None
        from_id = found.id if found is not None else ""
        # The owner received it: as To, Cc, or (not listed) Bcc.
        if owner_id:
            if any(filters.is_own(a.email) for a in item.to):
                to_ids.append(owner_id)
            elif any(filters.is_own(a.email) for a in item.cc):
                cc_ids.append(owner_id)
            else:
                bcc_ids.append(owner_id)
    return EmailDraft(
        key=item.dedup_key,
        subject=clean_line(item.subject),
        body=clean_text(item.body_text),
        from_address=sender.email if sender else "",
        from_name=clean_line(sender.name) if sender else "",
        to_addresses=_unmatched(item.to, linked, filters),
        cc_addresses=_unmatched(item.cc, linked, filters),
        message_date=item.when,
        outgoing=outgoing,
        to_ids=to_ids,
        cc_ids=cc_ids,
        bcc_ids=bcc_ids,
        from_id=from_id,
        people_ids=people_ids,
    )


def event_people(matched: list[Person]) -> list[str]:
    """Who a meeting is related to: its first 50 Contacts in order, else its first Lead alone."""
    # Contacts win over a Lead: they are the accounts' people, and a lead cannot share the event.
    contacts = [p.id for p in matched if p.kind is PersonKind.CONTACT]
    if contacts:
        return contacts[:MAX_EVENT_CONTACTS]
    return [p.id for p in matched if p.kind is PersonKind.LEAD][:1]


def event_draft(
    item: EventItem, people: Mapping[str, Person], filters: Filters, *, allow_unmatched: bool = False
) -> EventDraft | None:
    """The draft of a meeting, or None without a start or (unless allowed) without a matched attendee."""
    if item.start is None:
        return None
    matched = people_of(item.participants, people, filters)
    if not matched and not allow_unmatched:
        return None
    start = item.start if item.start.tzinfo else item.start.replace(tzinfo=UTC)
    end = item.end if item.end is not None else start
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    if end < start:
        # A meeting that ends before it starts is a data error upstream; log it as a point in time.
        end = start
    return EventDraft(
        key=item.dedup_key,
        subject=clean_line(item.subject),
        body=clean_text(item.body_text),
        location=clean_line(item.location),
        start=start,
        end=end,
        is_all_day=item.is_all_day,
        people_ids=event_people(matched),
    )


def iso_utc(value: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 UTC (None stays None)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds")
