"""exchangelib items as the Mailbox protocol's items: which fields to ask for, and the conversion.

SyncFolderItems cannot return bodies, so each call asks only for ids plus the dates it needs to
filter (``DateTimeReceived``/``DateTimeSent``; ``Start``/``End``/``CalendarItemType``) and GetItem
then fetches the full items that pass. A recurring series shows up as its master (a changed or
deleted occurrence as an update of it); :mod:`.series` reads it as its occurrences in the window.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from exchangelib.fields import FieldPath
from exchangelib.version import EXCHANGE_2013, Version

from backend.connectors.exchange.cursor import Cursor
from backend.connectors.mailbox import (
    MAX_RECIPIENTS,
    Address,
    EmailItem,
    EventItem,
    Folder,
    Sensitivity,
    bound_text,
    normalise_message_id,
    valid_text,
)

_TAGS = re.compile(r"<[^>]+>")
_SENSITIVITY = {
    "normal": Sensitivity.NORMAL,
    "personal": Sensitivity.PERSONAL,
    "private": Sensitivity.PRIVATE,
    "confidential": Sensitivity.CONFIDENTIAL,
}

MAIL_SYNC_FIELDS = ("datetime_received", "datetime_sent")
EVENT_SYNC_FIELDS = ("start", "end", "type")
MAIL_FIELDS = ("subject", "sensitivity", "datetime_received", "datetime_sent", "is_draft", "author", "sender",
               "to_recipients", "cc_recipients", "message_id")
# The time zones date all-day events: exchangelib turns their Start/End into dates in the item's own
# zone (without it, in the worker's local zone: the date would depend on where the server runs).
EVENT_FIELDS = ("uid", "subject", "sensitivity", "start", "end", "is_all_day", "location", "is_cancelled",
                "is_recurring", "type", "organizer", "required_attendees", "optional_attendees", "recurrence",
                "_start_timezone", "_end_timezone", "deleted_occurrences")


def utc_of(value: Any) -> datetime | None:
    """An exchangelib date or datetime as an aware UTC datetime (naive ones are taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, tzinfo=UTC)
        return datetime.fromtimestamp(value.timestamp(), tz=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def address_of(mailbox: Any) -> Address | None:
    """A Mailbox or Attendee as our Address."""
    if mailbox is None:
        return None
    inner = getattr(mailbox, "mailbox", None)  # Attendee -> Mailbox
    target = inner if inner is not None else mailbox
    return Address.of(getattr(target, "email_address", None), getattr(target, "name", None))


def addresses_of(values: Sequence[Any] | None) -> tuple[tuple[Address, ...], int]:
    """At most MAX_RECIPIENTS addresses, and how many were cut."""
    found = [a for a in (address_of(v) for v in values or []) if a is not None]
    return tuple(found[:MAX_RECIPIENTS]), max(0, len(found) - MAX_RECIPIENTS)


def _text_body(item: Any) -> str:
    """The item's body as plain text (TextBody, else Body with the tags stripped)."""
    text = getattr(item, "text_body", None)
    if text:
        return str(text)
    body = getattr(item, "body", None)
    if not body:
        return ""
    if type(body).__name__ == "HTMLBody":
        return html.unescape(_TAGS.sub(" ", str(body)))
    return str(body)


def _sensitivity(value: Any) -> Sensitivity:
    """Exchange's sensitivity as ours (unknown values count as normal)."""
    return _SENSITIVITY.get(str(value or "normal").lower(), Sensitivity.NORMAL)


def field_paths(model: Any, names: Sequence[str], version: Version, with_body: bool = False) -> set[FieldPath]:
    """The FieldPaths to ask for ``names`` of ``model`` (plus the body in the form the server has)."""
    paths = {FieldPath(field=model.get_field_by_fieldname(n)) for n in names}
    if with_body:
        # TextBody (plain text, Exchange 2013+) spares us converting HTML; older servers send Body.
        body = "text_body" if version.build >= EXCHANGE_2013 else "body"
        paths.add(FieldPath(field=model.get_field_by_fieldname(body)))
    return paths


def in_bounds(item: Any, cursor: Cursor, calendar: bool) -> bool:
    """Whether a SyncFolderItems change falls inside the cursor's window (so its full item is fetched)."""
    if not calendar:
        when = utc_of(getattr(item, "datetime_received", None) or getattr(item, "datetime_sent", None))
        return when is None or when >= cursor.floor
    start = utc_of(getattr(item, "start", None))
    end = utc_of(getattr(item, "end", None)) or start
    if cursor.ceiling is not None and start is not None and start > cursor.ceiling:
        return False
    if getattr(item, "type", None) == "RecurringMaster":
        return True  # the series may reach into the window; its recurrence is checked after GetItem
    return end is None or end >= cursor.floor


def email_item(item: Any, folder: Folder) -> EmailItem:
    """An exchangelib Message (from GetItem) as our EmailItem."""
    to, to_cut = addresses_of(item.to_recipients)
    cc, cc_cut = addresses_of(item.cc_recipients)
    body, body_cut = bound_text(_text_body(item))
    return EmailItem(
        remote_id=item.id,
        folder=folder,
        message_id=normalise_message_id(item.message_id),
        sender=address_of(item.author) or address_of(item.sender),
        to=to,
        cc=cc,
        subject=item.subject or "",
        body_text=body,
        sent_at=utc_of(item.datetime_sent),
        received_at=utc_of(item.datetime_received),
        sensitivity=_sensitivity(item.sensitivity),
        is_draft=bool(item.is_draft),
        truncated=bool(to_cut or cc_cut) or body_cut,
        recipients_cut=to_cut + cc_cut,
    )


def event_times(item: Any) -> tuple[datetime | None, datetime | None]:
    """Start and end in UTC; an all-day event as midnight UTC of its first day and of the day after
    its last (exchangelib gives the dates, in the item's zone, with the last day inclusive)."""
    start, end = item.start, item.end
    if item.is_all_day and isinstance(start, date) and not isinstance(start, datetime):
        first = utc_of(start)
        last = utc_of(end) if isinstance(end, date) and not isinstance(end, datetime) else first
        return first, (max(first, last) + timedelta(days=1)) if first and last else None
    return utc_of(start), utc_of(end)


def event_item(item: Any, cursor: Cursor) -> EventItem | None:
    """An exchangelib CalendarItem as our EventItem; None for a series that ended before the window."""
    recurring = item.type == "RecurringMaster" or bool(item.is_recurring)
    if item.type == "RecurringMaster":
        boundary = getattr(getattr(item, "recurrence", None), "boundary", None)
        until = getattr(boundary, "end", None)
        if until is not None and utc_of(until) is not None and utc_of(until) < cursor.floor:  # type: ignore[operator]
            return None  # a series that ended before the window
    attendees, cut = addresses_of([*(item.required_attendees or []), *(item.optional_attendees or [])])
    body, body_cut = bound_text(_text_body(item))
    occurrence = utc_of(getattr(item, "original_start", None)) if item.type in ("Occurrence", "Exception") else None
    start, end = event_times(item)
    return EventItem(
        remote_id=item.id,
        uid=valid_text(item.uid or item.id),
        subject=item.subject or "",
        body_text=body,
        location=str(item.location or ""),
        start=start,
        end=end,
        is_all_day=bool(item.is_all_day),
        organizer=address_of(item.organizer),
        attendees=attendees,
        sensitivity=_sensitivity(item.sensitivity),
        is_cancelled=bool(item.is_cancelled),
        is_recurring=recurring,
        occurrence_start=occurrence,
        truncated=bool(cut) or body_cut,
        recipients_cut=cut,
    )
