"""Drafts packed into sObject records: EmailMessage (or Task without Enhanced Email), Event, relations.

Text is cut to each field's length as Salesforce counts it (UTF-16 units, :func:`clip`), with a
marker, so an oversized value is shortened rather than the record refused.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

from backend.connectors.crm import Capabilities, EmailDraft, EventDraft, ExistingEvent, clip, join_addresses
from backend.connectors.salesforce.batches import Unit

# Lengths of the fields we write (object reference; EmailMessage.TextBody holds 128 KB).
FIELD_LIMITS: dict[str, dict[str, int]] = {
    "EmailMessage": {"Subject": 3000, "TextBody": 131_072, "FromAddress": 1000, "FromName": 1000,
                     "ToAddress": 4000, "CcAddress": 4000, "RelationAddress": 255},
    "Task": {"Subject": 255, "Description": 32_000},
    "Event": {"Subject": 255, "Description": 32_000, "Location": 255},
}
KEY_FIELD_MAX = 255
CANCELLED_PREFIX = "Canceled: "
# Key prefixes of Contact and Lead ids, and Shared Activities' rule: an event is related to up to
# 50 contacts or one lead (EventRelation, object reference).
CONTACT_PREFIX, LEAD_PREFIX = "003", "00Q"
MAX_EVENT_CONTACTS = 50


def activity_key(key: str) -> str:
    """The value stored in the activity key field (a hash when the key is longer than the field)."""
    if len(key) <= KEY_FIELD_MAX:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def iso(value: datetime) -> str:
    """A datetime as Salesforce writes it (UTC, whole seconds as milliseconds, ``+0000``)."""
    # isoformat is a third of strftime's cost (a date-time for every record written).
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    return utc.isoformat(timespec="seconds")[:19] + ".000+0000"


def sender_relation(draft: EmailDraft) -> dict[str, Any]:
    """The FromAddress relation of an email (the matched sender, or the owner for sent mail)."""
    return {
        "attributes": {"type": "EmailMessageRelation"},
        "RelationId": draft.from_id,
        "RelationType": "FromAddress",
        "RelationAddress": clip(draft.from_address, FIELD_LIMITS["EmailMessage"]["RelationAddress"], ""),
    }


def email_relation(person_id: str, relation_type: str) -> dict[str, Any]:
    """A To, Cc or Bcc EmailMessageRelation row (a repair; new emails get theirs through ToIds/CcIds)."""
    return {"attributes": {"type": "EmailMessageRelation"}, "RelationId": person_id, "RelationType": relation_type}


def event_relation(person_id: str) -> dict[str, Any]:
    """An EventRelation row making ``person_id`` (a Contact or Lead) a participant of a meeting."""
    return {"attributes": {"type": "EventRelation"}, "RelationId": person_id, "IsParent": True, "IsWhat": False,
            "IsInvitee": False}


def event_update(event_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """An Event record that changes ``fields`` of an existing meeting."""
    return {"attributes": {"type": "Event"}, "Id": event_id, **fields}


def cancelled_subject(subject: str) -> str:
    """The subject of a meeting marked cancelled (the prefix first, cut to the field)."""
    return clip(CANCELLED_PREFIX + subject, FIELD_LIMITS["Event"]["Subject"])


def email_unit(draft: EmailDraft, caps: Capabilities) -> Unit | None:
    """An EmailMessage with its sender relation, a Task without Enhanced Email, None without a key field."""
    if caps.enhanced_email:
        limits = FIELD_LIMITS["EmailMessage"]
        record: dict[str, Any] = {
            "attributes": {"type": "EmailMessage"},
            "Subject": clip(draft.subject, limits["Subject"]),
            "TextBody": clip(draft.body, limits["TextBody"]),
            "FromAddress": clip(draft.from_address, limits["FromAddress"]),
            "FromName": clip(draft.from_name, limits["FromName"]),
            "ToAddress": join_addresses(draft.to_addresses, limits["ToAddress"]) or None,
            "CcAddress": join_addresses(draft.cc_addresses, limits["CcAddress"]) or None,
            "MessageDate": iso(draft.message_date) if draft.message_date else None,
            # 3 = Sent, 1 = Read: logged mail is never "New" (unread) in Salesforce.
            "Status": "3" if draft.outgoing else "1",
            "Incoming": not draft.outgoing,
            "MessageIdentifier": draft.key,
        }
        for name, ids in (("ToIds", draft.to_ids), ("CcIds", draft.cc_ids), ("BccIds", draft.bcc_ids)):
            if ids:
                record[name] = list(dict.fromkeys(ids))
        unit = Unit(draft.key, "EmailMessage", record, "email", relation_parent_field="EmailMessageId")
        if draft.from_id:
            unit.relations.append(sender_relation(draft))
        return unit
    if not caps.activity_key_field:
        return None
    return Unit(draft.key, "Task", _task_record(draft, caps.activity_key_field), "email")


def _task_record(draft: EmailDraft, key_field: str) -> dict[str, Any]:
    """An email as a completed Task (orgs without Enhanced Email), deduplicated by our key field."""
    limits = FIELD_LIMITS["Task"]
    header = [f"From: {draft.from_address}"]
    if draft.to_addresses:
        header.append("To: " + join_addresses(draft.to_addresses, 2000))
    if draft.cc_addresses:
        header.append("Cc: " + join_addresses(draft.cc_addresses, 2000))
    when = draft.message_date or datetime.now(tz=UTC)
    record = {
        "attributes": {"type": "Task"},
        "TaskSubtype": "Email",
        "Subject": clip(f"Email: {draft.subject}", limits["Subject"]),
        "Description": clip("\n".join(header) + "\n\n" + draft.body, limits["Description"]),
        "ActivityDate": when.astimezone(UTC).date().isoformat(),
        "Status": "Completed",
        "Priority": "Normal",
        key_field: activity_key(draft.key),
    }
    if draft.people_ids:
        record["WhoId"] = draft.people_ids[0]
    return record


def event_fields(draft: EventDraft) -> dict[str, Any]:
    """The Event fields we own (an all-day meeting spans whole UTC days, as Salesforce stores it).

    An all-day meeting carries its ActivityDate: left to Salesforce, the date would be that of
    StartDateTime in the Salesforce user's time zone, a day early west of Greenwich.
    """
    limits = FIELD_LIMITS["Event"]
    fields: dict[str, Any] = {
        "Subject": clip(draft.subject, limits["Subject"]),
        "Location": clip(draft.location, limits["Location"]) or None,
        "Description": clip(draft.body, limits["Description"]) or None,
        "IsAllDayEvent": draft.is_all_day,
    }
    if draft.is_all_day:
        first: date = draft.start.date()
        last = max(first, (draft.end - timedelta(seconds=1)).date())
        fields["ActivityDate"] = first.isoformat()
        fields["StartDateTime"] = iso(datetime(first.year, first.month, first.day, tzinfo=UTC))
        fields["EndDateTime"] = iso(datetime(last.year, last.month, last.day, tzinfo=UTC))
    else:
        fields["StartDateTime"] = iso(draft.start)
        fields["EndDateTime"] = iso(draft.end)
    return fields


def joinable(staying: set[str], wanted: list[str]) -> list[str]:
    """Those of ``wanted`` an event related to ``staying`` may take too (up to 50 contacts or one lead)."""
    # Mapping keeps a draft within the rule; people related by hand (or by a colleague's run) may
    # not be, and a relation Salesforce refuses would be sent again on every change of the meeting.
    leads = sum(1 for p in staying if p.startswith(LEAD_PREFIX))
    contacts = sum(1 for p in staying if p.startswith(CONTACT_PREFIX))
    kept: list[str] = []
    for person in wanted:
        if person.startswith(LEAD_PREFIX):
            if leads or contacts:
                continue
            leads += 1
        elif person.startswith(CONTACT_PREFIX):
            if leads or contacts >= MAX_EVENT_CONTACTS:
                continue
            contacts += 1
        kept.append(person)
    return kept


def event_unit(draft: EventDraft, key_field: str) -> Unit:
    """A new Event (the first person as WhoId) with an EventRelation for each further one it may take."""
    record = {"attributes": {"type": "Event"}, **event_fields(draft), key_field: activity_key(draft.key)}
    # Mapping chose the people within Shared Activities' rule; kept to it here too, so that no draft
    # makes a row Salesforce refuses.
    people = joinable(set(), list(dict.fromkeys(draft.people_ids)))
    if people:
        record["WhoId"] = people[0]
    unit = Unit(draft.key, "Event", record, "event", relation_parent_field="EventId")
    for person_id in people[1:]:
        unit.relations.append(event_relation(person_id))
    return unit


def event_changes(existing: ExistingEvent, draft: EventDraft) -> dict[str, Any]:
    """The fields of ``existing`` that differ from what ``draft`` would write (empty and None are alike)."""
    wanted = event_fields(draft)
    changes: dict[str, Any] = {}
    current = {
        "Subject": existing.subject,
        "Location": existing.location or None,
        "Description": existing.description or None,
        "IsAllDayEvent": existing.is_all_day,
        "ActivityDate": existing.activity_date or None,
        "StartDateTime": iso(existing.start) if existing.start else None,
        "EndDateTime": iso(existing.end) if existing.end else None,
    }
    for name, value in wanted.items():
        if (current.get(name) or None) != (value or None) and not (name == "IsAllDayEvent"
                                                                   and bool(current[name]) == bool(value)):
            changes[name] = value
    return changes
