"""Gmail and Calendar JSON as our items: messages as :class:`EmailItem`, events as :class:`EventItem`.

Gmail has no sensitivity flag of its own; Outlook and Exchange send it as the ``Sensitivity``
header (RFC 2156: Personal, Private, Company-Confidential), which is what is read here. Calendar's
``visibility`` private/confidential maps to the same sensitivities. A Calendar event with
``status: "cancelled"`` and its details is a cancelled meeting; one with only its id (what a sync
round reports for a deleted event or a cancelled occurrence) is a deletion.
"""

from __future__ import annotations

import base64
import email.utils
import html
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.connectors.mailbox import (
    MAX_RECIPIENTS,
    Address,
    Deletion,
    EmailItem,
    EventItem,
    Folder,
    MailboxIdentity,
    Sensitivity,
    bound_text,
    normalise_message_id,
    valid_text,
)
from backend.errors import Unavailable

# Labels whose mail is never logged.
NEVER_LOGGED = frozenset({"DRAFT", "SPAM", "TRASH"})
FOLDER_LABELS = {Folder.INBOX: "INBOX", Folder.SENT: "SENT"}
_SENSITIVITY_HEADER = {"personal": Sensitivity.PERSONAL, "private": Sensitivity.PRIVATE,
                       "company-confidential": Sensitivity.CONFIDENTIAL, "confidential": Sensitivity.CONFIDENTIAL}
_VISIBILITY = {"private": Sensitivity.PRIVATE, "confidential": Sensitivity.CONFIDENTIAL}
_TAGS = re.compile(r"<[^>]+>")
_BREAKS = re.compile(r"<\s*(br|/p|/div|/li|/tr)\s*/?>", re.IGNORECASE)
_HIDDEN = re.compile(r"<(style|script)[^>]*>.*?</\1>", re.IGNORECASE | re.DOTALL)


def _headers(payload: Mapping[str, Any]) -> dict[str, str]:
    """Header values by lower-cased name (the first of each)."""
    found: dict[str, str] = {}
    for header in payload.get("headers") or []:
        if isinstance(header, dict):
            found.setdefault(str(header.get("name", "")).lower(), str(header.get("value", "")))
    return found


def _decode(data: str) -> str:
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return raw.decode("utf-8", "replace")


def _parts(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The leaf parts of a message, depth first (attachments left out)."""
    found: list[Mapping[str, Any]] = []
    stack = [payload]
    while stack:
        part = stack.pop(0)
        children = part.get("parts") or []
        if children:
            stack[0:0] = [c for c in children if isinstance(c, dict)]
        elif not part.get("filename"):
            found.append(part)
    return found


def body_text(payload: Mapping[str, Any]) -> str:
    """The text of a message: its text/plain part, or its HTML part reduced to text."""
    leaves = _parts(payload)
    for kind in ("text/plain", "text/html"):
        for part in leaves:
            data = (part.get("body") or {}).get("data")
            if str(part.get("mimeType", "")).lower() == kind and data:
                text = _decode(str(data))
                if kind == "text/html":
                    text = html.unescape(_TAGS.sub("", _BREAKS.sub("\n", _HIDDEN.sub("", text))))
                return text.replace("\r\n", "\n").strip()
    return ""


def _addresses(value: str) -> tuple[tuple[Address, ...], int]:
    """At most MAX_RECIPIENTS addresses of a header, and how many were cut."""
    found = [a for a in (Address.of(addr, name) for name, addr in email.utils.getaddresses([value]) if addr)
             if a is not None]
    return tuple(found[:MAX_RECIPIENTS]), max(0, len(found) - MAX_RECIPIENTS)


def _date_header(value: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
        # Inside the try: a date at the edge of the range ("31 Dec 9999 -1200") parses but has no
        # UTC form (OverflowError); anyone can send one, so it must fall back, not fail the folder.
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse_message(data: Mapping[str, Any], folder: Folder) -> EmailItem | None:
    """A Gmail message (``format=full``) as an :class:`EmailItem`; None for drafts, spam and trash."""
    labels = set(data.get("labelIds") or [])
    if labels & NEVER_LOGGED:
        return None
    payload = data.get("payload") or {}
    headers = _headers(payload)
    sender, _ = _addresses(headers.get("from", ""))
    to, to_cut = _addresses(headers.get("to", ""))
    cc, cc_cut = _addresses(headers.get("cc", ""))
    text, body_cut = bound_text(body_text(payload))
    received = datetime.fromtimestamp(int(str(data.get("internalDate") or "0")) / 1000, tz=UTC) \
        if data.get("internalDate") else None
    return EmailItem(
        remote_id=str(data["id"]),
        folder=folder,
        message_id=normalise_message_id(headers.get("message-id")),
        sender=sender[0] if sender else None,
        to=to,
        cc=cc,
        subject=headers.get("subject", ""),
        body_text=text,
        sent_at=_date_header(headers.get("date", "")) or received,
        received_at=received,
        sensitivity=_SENSITIVITY_HEADER.get(headers.get("sensitivity", "").strip().lower(), Sensitivity.NORMAL),
        truncated=bool(to_cut or cc_cut) or body_cut,
        recipients_cut=to_cut + cc_cut,
    )


def _zone(name: Any, fallback: tzinfo = UTC) -> tzinfo:
    """An IANA zone by name (Calendar's ``timeZone``), or ``fallback`` when absent or unknown."""
    try:
        return ZoneInfo(str(name)) if name else fallback
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name that is a directory of the zone database ("America") or too long for a path.
        return fallback


def _moment(value: Any, calendar_zone: tzinfo = UTC) -> tuple[datetime | None, bool]:
    """(the moment in UTC, whether it is an all-day date) of a Calendar ``start``/``end``.

    A ``dateTime`` without an offset is in its ``timeZone`` (else the calendar's); an all-day
    ``date`` is midnight UTC of that date, never converted (the date is what counts).
    """
    if not isinstance(value, dict):
        return None, False
    if value.get("dateTime"):
        moment = datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_zone(value.get("timeZone"), calendar_zone))
        return moment.astimezone(UTC), False
    if value.get("date"):
        day = date.fromisoformat(str(value["date"]))
        return datetime(day.year, day.month, day.day, tzinfo=UTC), True
    return None, False


def _original_start(value: Any, calendar_zone: tzinfo) -> datetime | None:
    """An instance's ``originalStartTime`` as the instant Exchange's OriginalStart and Graph's originalStart
    give: for an all-day series, midnight of the original date in the series' zone (its ``timeZone``,
    else the calendar's), so one series yields the same keys through every provider."""
    if isinstance(value, dict) and value.get("date") and not value.get("dateTime"):
        day = date.fromisoformat(str(value["date"]))
        zone = _zone(value.get("timeZone"), calendar_zone)
        return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    moment, _ = _moment(value, calendar_zone)
    return moment


def _person(value: Any) -> Address | None:
    return Address.of(value.get("email"), value.get("displayName")) if isinstance(value, dict) else None


def parse_event(data: Mapping[str, Any], calendar_zone: str = "UTC") -> EventItem | Deletion:
    """A Calendar event (``singleEvents=true``) as an :class:`EventItem`, or a :class:`Deletion` for a tombstone.

    ``calendar_zone`` is the calendar's ``timeZone`` (events.list says it). A cancelled entry without
    its details (a deleted event: its id only; a cancelled instance of a series: its id,
    ``recurringEventId`` and ``originalStartTime`` only) is a deletion: the meeting map knows its id.
    """
    remote_id = str(data["id"])
    cancelled = str(data.get("status", "")) == "cancelled"
    if cancelled and not (data.get("start") and data.get("iCalUID")):
        return Deletion(remote_id=remote_id, folder=Folder.CALENDAR)
    zone = _zone(calendar_zone)
    start, all_day = _moment(data.get("start"), zone)
    end, _ = _moment(data.get("end"), zone)
    found = [a for a in (_person(v) for v in data.get("attendees") or []
                         if isinstance(v, dict) and not v.get("resource")) if a is not None]
    text, body_cut = bound_text(str(data.get("description") or ""))
    series = str(data.get("recurringEventId") or "")
    occurrence = _original_start(data.get("originalStartTime"), zone) if series else None
    cut = max(0, len(found) - MAX_RECIPIENTS)
    return EventItem(
        remote_id=remote_id,
        uid=valid_text(str(data.get("iCalUID") or remote_id)),
        subject=str(data.get("summary") or ""),
        body_text=text,
        location=str(data.get("location") or ""),
        start=start,
        end=end,
        is_all_day=all_day,
        organizer=_person(data.get("organizer")),
        attendees=tuple(found[:MAX_RECIPIENTS]),
        sensitivity=_VISIBILITY.get(str(data.get("visibility") or "default"), Sensitivity.NORMAL),
        is_cancelled=cancelled,
        is_recurring=bool(series),
        occurrence_start=occurrence,
        # A series deleted whole may be reported by its master's id: the map keeps its occurrences under it.
        series_id=series,
        truncated=body_cut or bool(cut),
        recipients_cut=cut,
    )


def identity_from(profile: Mapping[str, Any], send_as: Mapping[str, Any]) -> MailboxIdentity:
    """A :class:`MailboxIdentity` from ``users.getProfile`` and ``users.settings.sendAs.list``."""
    primary = str(profile.get("emailAddress") or "").strip().lower()
    if not primary or "@" not in primary:
        raise Unavailable("Gmail returned no address for this mailbox.")
    aliases: set[str] = set()
    display = ""
    for entry in send_as.get("sendAs") or []:
        if not isinstance(entry, dict):
            continue
        address = str(entry.get("sendAsEmail") or "").strip().lower()
        if entry.get("isPrimary"):
            display = str(entry.get("displayName") or "")
        # An address still awaiting its owner's confirmation is not (yet) this mailbox.
        if "@" in address and entry.get("verificationStatus", "accepted") == "accepted":
            aliases.add(address)
    aliases.discard(primary)
    return MailboxIdentity(primary=primary, aliases=frozenset(aliases), display_name=display)
