"""Items as EWS XML (only the requested properties) and the small restriction language of FindItem."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from lxml import etree

from sandbox.ews.recurrence import modified
from sandbox.ews.soap import SoapError, T, el, iso, parse_dt
from sandbox.ews.state import EwsItem


def _mailbox(parent: Any, tag: str, addr: tuple[str, str] | None) -> None:
    if addr is None:
        return
    holder = el(T + tag, parent)
    add_mailbox(holder, addr)


def add_mailbox(parent: Any, addr: tuple[str, str], mailbox_type: str = "OneOff") -> None:
    """Append a ``Mailbox`` element for (address, name)."""
    box = el(T + "Mailbox", parent)
    if addr[1]:
        el(T + "Name", box, addr[1])
    el(T + "EmailAddress", box, addr[0])
    el(T + "RoutingType", box, "SMTP")
    el(T + "MailboxType", box, mailbox_type)


def _render_field(node: Any, item: EwsItem, uri: str) -> None:
    """Append the elements of one requested property (unknown ones are left out)."""
    if uri == "item:ItemClass":
        el(T + "ItemClass", node, "IPM.Note" if item.kind == "message" else "IPM.Appointment")
    elif uri == "item:Subject":
        el(T + "Subject", node, item.subject)
    elif uri == "item:Sensitivity":
        el(T + "Sensitivity", node, item.sensitivity)
    elif uri in ("item:Body", "item:TextBody"):
        el(T + uri.split(":")[1], node, item.body, BodyType="Text")
    elif uri == "item:DateTimeReceived" and item.received:
        el(T + "DateTimeReceived", node, iso(item.received))
    elif uri == "item:DateTimeSent" and item.sent:
        el(T + "DateTimeSent", node, iso(item.sent))
    elif uri == "item:DateTimeCreated":
        el(T + "DateTimeCreated", node, iso(item.created))
    elif uri == "item:IsDraft":
        el(T + "IsDraft", node, "true" if item.is_draft else "false")
    elif item.kind == "message":
        if uri == "message:From":
            _mailbox(node, "From", item.sender)
        elif uri == "message:Sender":
            _mailbox(node, "Sender", item.sender)
        elif uri in ("message:ToRecipients", "message:CcRecipients") and (item.to if "To" in uri else item.cc):
            holder = el(T + uri.split(":")[1], node)
            for addr in item.to if "To" in uri else item.cc:
                add_mailbox(holder, addr)
        elif uri == "message:InternetMessageId" and item.message_id:
            el(T + "InternetMessageId", node, item.message_id)
    else:
        _render_calendar_field(node, item, uri)


def _render_calendar_field(node: Any, item: EwsItem, uri: str) -> None:
    if uri == "calendar:UID":
        el(T + "UID", node, item.uid)
    elif uri == "calendar:Start" and item.start:
        el(T + "Start", node, iso(item.start))
    elif uri == "calendar:End" and item.end:
        el(T + "End", node, iso(item.end))
    elif uri == "calendar:IsAllDayEvent":
        el(T + "IsAllDayEvent", node, "true" if item.is_all_day else "false")
    elif uri == "calendar:Location" and item.location:
        el(T + "Location", node, item.location)
    elif uri == "calendar:IsCancelled":
        el(T + "IsCancelled", node, "true" if item.is_cancelled else "false")
    elif uri == "calendar:IsRecurring":
        el(T + "IsRecurring", node, "true" if item.item_type != "Single" else "false")
    elif uri in ("calendar:StartTimeZone", "calendar:EndTimeZone"):
        el(T + uri.split(":")[1], node, Id=item.timezone, Name=item.timezone)
    elif uri == "calendar:CalendarItemType":
        el(T + "CalendarItemType", node, item.item_type)
    elif uri == "calendar:Organizer":
        _mailbox(node, "Organizer", item.organizer)
    elif uri in ("calendar:RequiredAttendees", "calendar:OptionalAttendees"):
        people = item.required if "Required" in uri else item.optional
        if people:
            holder = el(T + uri.split(":")[1], node)
            for addr in people:
                attendee = el(T + "Attendee", holder)
                add_mailbox(attendee, addr, "Mailbox")
                el(T + "ResponseType", attendee, "Unknown")
    elif uri == "calendar:OriginalStart" and item.original_start is not None:
        el(T + "OriginalStart", node, iso(item.original_start))
    elif uri == "calendar:DeletedOccurrences" and item.deleted_occurrences:
        holder = el(T + "DeletedOccurrences", node)
        for start in item.deleted_occurrences:
            el(T + "Start", el(T + "DeletedOccurrence", holder), iso(start))
    elif uri == "calendar:ModifiedOccurrences" and item.exceptions:
        holder = el(T + "ModifiedOccurrences", node)
        for exception in modified(item):
            entry = el(T + "Occurrence", holder)
            el(T + "ItemId", entry, Id=exception.id, ChangeKey=exception.changekey)
            for tag, value in (("Start", exception.start), ("End", exception.end),
                               ("OriginalStart", exception.original_start)):
                if value is not None:
                    el(T + tag, entry, iso(value))
    elif uri == "calendar:Recurrence" and item.item_type == "RecurringMaster" and item.start:
        rec = el(T + "Recurrence", node)
        daily = el(T + "DailyRecurrence", rec)
        el(T + "Interval", daily, str(item.interval_days))
        if item.recurrence_end:
            rng = el(T + "EndDateRecurrence", rec)
            el(T + "StartDate", rng, item.start.date().isoformat())
            el(T + "EndDate", rng, item.recurrence_end.isoformat())
        else:
            rng = el(T + "NoEndRecurrence", rec)
            el(T + "StartDate", rng, item.start.date().isoformat())


def render_item(parent: Any, item: EwsItem, fields: Iterable[str]) -> Any:
    """Append ``item`` (its id and the requested properties) to ``parent``."""
    node = el(T + ("Message" if item.kind == "message" else "CalendarItem"), parent)
    el(T + "ItemId", node, Id=item.id, ChangeKey=item.changekey)
    for uri in fields:
        _render_field(node, item, uri)
    return node


def requested_fields(shape: Any) -> tuple[str, ...]:
    """The property URIs an ``ItemShape`` asks for (a non-IdOnly base shape adds its defaults)."""
    if shape is None:
        return ()
    base = shape.findtext(T + "BaseShape") or "IdOnly"
    uris = [f.get("FieldURI") for f in shape.iter(T + "FieldURI")]
    if base != "IdOnly":
        uris += ["item:Subject", "item:DateTimeReceived", "item:DateTimeSent", "item:Sensitivity",
                 "message:From", "message:ToRecipients", "calendar:Start", "calendar:End", "calendar:UID"]
    return tuple(u for u in uris if u)



_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "IsEqualTo": lambda a, b: a == b,
    "IsNotEqualTo": lambda a, b: a != b,
    "IsGreaterThan": lambda a, b: a > b,
    "IsGreaterThanOrEqualTo": lambda a, b: a >= b,
    "IsLessThan": lambda a, b: a < b,
    "IsLessThanOrEqualTo": lambda a, b: a <= b,
}
_ATTR = {"item:DateTimeReceived": "received", "item:DateTimeSent": "sent", "item:Subject": "subject",
         "calendar:Start": "start", "calendar:End": "end"}


def matches(node: Any, item: EwsItem) -> bool:
    """Evaluate a (small) EWS restriction against an item."""
    name = etree.QName(node).localname
    if name == "And":
        return all(matches(child, item) for child in node)
    if name == "Or":
        return any(matches(child, item) for child in node)
    if name == "Not":
        return not matches(node[0], item)
    if name in _COMPARE:
        uri = node.find(T + "FieldURI").get("FieldURI")
        constant = node.find(f"{T}FieldURIOrConstant/{T}Constant").get("Value")
        value = getattr(item, _ATTR.get(uri, ""), None)
        if value is None:
            return False
        other: Any = parse_dt(constant) if isinstance(value, datetime) else constant
        return _COMPARE[name](value, other)
    raise SoapError("ErrorUnsupportedQueryFilter", f"Restriction {name} is not supported by the fake.")
