"""Graph JSON as our items: messages as :class:`EmailItem`, events as :class:`EventItem`, ``/me`` as an identity.

Graph has no first-class message property for PidTagSensitivity, so messages are read with the
MAPI property ``Integer 0x0036`` expanded (:data:`SENSITIVITY_PROPERTY`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.connectors.mailbox import (
    MAX_RECIPIENTS,
    Address,
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

# Only what sync uses; PidTagSensitivity has no first-class message property in Graph.
MESSAGE_FIELDS = (
    "id", "internetMessageId", "subject", "body", "from", "sender", "toRecipients", "ccRecipients",
    "receivedDateTime", "sentDateTime", "isDraft",
)
SENSITIVITY_PROPERTY = "Integer 0x0036"
_SENSITIVITY_CODES = {0: Sensitivity.NORMAL, 1: Sensitivity.PERSONAL, 2: Sensitivity.PRIVATE,
                      3: Sensitivity.CONFIDENTIAL}


def _parse_time(value: Any, zone: str = "UTC") -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        try:
            tz: Any = UTC if zone in ("", "UTC", "tzone://Microsoft/Utc") else ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            tz = UTC  # we ask for UTC (Prefer: outlook.timezone); Windows zone names are not IANA
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)


def _day(value: Mapping[str, Any]) -> datetime | None:
    """An all-day event's date as midnight UTC: Graph gives all-day events midnight to midnight
    whatever time zone was asked for, so the date part is the date (never converted)."""
    raw = str(value.get("dateTime") or "")[:10]
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=UTC) if raw else None
    except ValueError:
        return None


def _address(value: Any) -> Address | None:
    if not isinstance(value, dict):
        return None
    inner = value.get("emailAddress") or {}
    return Address.of(inner.get("address"), inner.get("name")) if isinstance(inner, dict) else None


def _addresses(values: Any) -> tuple[tuple[Address, ...], int]:
    found = [a for a in (_address(v) for v in (values or [])) if a is not None]
    return tuple(found[:MAX_RECIPIENTS]), max(0, len(found) - MAX_RECIPIENTS)


def _body_text(value: Any) -> tuple[str, bool]:
    content = value.get("content", "") if isinstance(value, dict) else ""
    return bound_text(str(content or ""))


def _sensitivity_of_message(data: Mapping[str, Any]) -> Sensitivity:
    for prop in data.get("singleValueExtendedProperties") or []:
        pid = str(prop.get("id", "")).lower().replace(" ", "")
        if pid in {"integer0x0036", "integer0x36"}:
            try:
                return _SENSITIVITY_CODES.get(int(str(prop.get("value", "0"))), Sensitivity.NORMAL)
            except ValueError:
                return Sensitivity.NORMAL
    return Sensitivity.NORMAL


def _sensitivity(value: Any) -> Sensitivity:
    try:
        return Sensitivity(str(value or "normal").lower())
    except ValueError:
        return Sensitivity.NORMAL


def parse_email(data: Mapping[str, Any], folder: Folder) -> EmailItem:
    """A Graph message as an :class:`EmailItem`."""
    to, to_cut = _addresses(data.get("toRecipients"))
    cc, cc_cut = _addresses(data.get("ccRecipients"))
    body, body_cut = _body_text(data.get("body"))
    return EmailItem(
        remote_id=str(data["id"]),
        folder=folder,
        message_id=normalise_message_id(data.get("internetMessageId")),
        sender=_address(data.get("from")) or _address(data.get("sender")),
        to=to,
        cc=cc,
        subject=str(data.get("subject") or ""),
        body_text=body,
        sent_at=_parse_time(data.get("sentDateTime")),
        received_at=_parse_time(data.get("receivedDateTime")),
        sensitivity=_sensitivity_of_message(data),
        is_draft=bool(data.get("isDraft", False)),
        truncated=bool(to_cut or cc_cut) or body_cut,
        recipients_cut=to_cut + cc_cut,
    )


def parse_event(data: Mapping[str, Any]) -> EventItem:
    """A Graph event (one instance from calendarView) as an :class:`EventItem`."""
    attendees, cut = _addresses(data.get("attendees"))
    body, body_cut = _body_text(data.get("body"))
    start = data.get("start") or {}
    end = data.get("end") or {}
    kind = str(data.get("type") or "singleInstance")
    location = data.get("location") or {}
    all_day = bool(data.get("isAllDay", False))
    return EventItem(
        remote_id=str(data["id"]),
        uid=valid_text(str(data.get("iCalUId") or data["id"])),
        subject=str(data.get("subject") or ""),
        body_text=body,
        # Graph sends "displayName": null for a meeting without a place: "", not the text "None".
        location=str(location.get("displayName") or "" if isinstance(location, dict) else ""),
        start=_day(start) if all_day else _parse_time(start.get("dateTime"), str(start.get("timeZone", "UTC"))),
        end=_day(end) if all_day else _parse_time(end.get("dateTime"), str(end.get("timeZone", "UTC"))),
        is_all_day=all_day,
        organizer=_address(data.get("organizer")),
        attendees=attendees,
        sensitivity=_sensitivity(data.get("sensitivity")),
        is_cancelled=bool(data.get("isCancelled", False)),
        is_recurring=kind in {"occurrence", "exception", "seriesMaster"},
        occurrence_start=_parse_time(data.get("originalStart")) if kind in {"occurrence", "exception"} else None,
        truncated=bool(cut) or body_cut,
        recipients_cut=cut,
    )


def identity_from(data: Mapping[str, Any]) -> MailboxIdentity:
    """A :class:`MailboxIdentity` from ``/me`` (mail, userPrincipalName, proxyAddresses)."""
    mail = str(data.get("mail") or "").strip().lower()
    upn = str(data.get("userPrincipalName") or "").strip().lower()
    primary = mail or upn
    if not primary:
        raise Unavailable("Microsoft Graph returned no address for this mailbox.")
    aliases = {upn} if upn and "@" in upn else set()
    for proxy in data.get("proxyAddresses") or []:
        scheme, _, address = str(proxy).partition(":")
        # "SMTP:" marks the primary address, "smtp:" the others; x500:, sip: ... are not mail.
        if scheme.lower() == "smtp" and "@" in address:
            aliases.add(address.strip().lower())
    aliases.discard(primary)
    return MailboxIdentity(primary=primary, aliases=frozenset(aliases), display_name=str(data.get("displayName") or ""))
