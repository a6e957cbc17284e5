"""The Mailbox protocol and the normalised items every mailbox connector yields.

A connector (Exchange via EWS, Microsoft 365 via Graph, Gmail) reads changes since opaque cursors
and yields :class:`ChangePage` objects. Each page carries the cursor that is valid *after* that
page, so the engine can write the page's items and only then save its cursor: a crash between two
pages resumes from the last page written, and a rerun is harmless because writes are deduplicated
in the CRM.

Cursor keys are fixed: ``inbox``, ``sent`` and ``calendar``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import ClassVar, Protocol, runtime_checkable

# Bodies are cut before they leave the connector: Salesforce's EmailMessage.TextBody holds 128 KB
# and we never need more, and a bound keeps a run's memory flat whatever the mailbox holds.
MAX_BODY_CHARS = 32_000
# A stray message with tens of thousands of recipients must not blow up a run.
MAX_RECIPIENTS = 2_000
EVENT_LOOKBACK_DAYS = 14
# What parsing one provider item may raise on odd input: that item is counted unreadable and the
# folder goes on (OverflowError: a date at the edge of the range with no UTC form, "9999-12-31 -1200").
UNREADABLE_ITEM_ERRORS: tuple[type[Exception], ...] = (KeyError, TypeError, ValueError, AttributeError,
                                                       OverflowError)
EVENT_LOOKAHEAD_DAYS = 90
# A resync (a lost or expired cursor) reads mail back to the last run that caught up, less this
# margin for clocks and late delivery, but never further back than RESYNC_MAX_DAYS.
RESYNC_MARGIN_DAYS = 1
RESYNC_MAX_DAYS = 90

FOLDERS: tuple[str, ...] = ("inbox", "sent", "calendar")
BODY_TRUNCATION_MARKER = "\n[... truncated by Sidebar Sync]"


class Sensitivity(StrEnum):
    """Outlook's sensitivity flag; private and confidential items are never logged."""

    NORMAL = "normal"
    PERSONAL = "personal"
    PRIVATE = "private"
    CONFIDENTIAL = "confidential"


class Folder(StrEnum):
    """Where an item came from (also the cursor key)."""

    INBOX = "inbox"
    SENT = "sent"
    CALENDAR = "calendar"


@dataclass(frozen=True)
class Address:
    """An email participant; ``email`` is stored lower-cased and stripped."""

    email: str
    name: str = ""

    @staticmethod
    def of(email: str | None, name: str | None = None) -> Address | None:
        """Normalise an address, or None when there is none."""
        value = valid_text((email or "").strip().strip("<>").strip())
        if not value or "@" not in value:
            return None
        return Address(email=value.lower(), name=valid_text((name or "").strip()))


@dataclass(frozen=True)
class EmailItem:
    """An email, normalised. ``message_id`` is the Internet Message-ID (dedup key across users)."""

    remote_id: str
    folder: Folder
    message_id: str
    sender: Address | None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    subject: str = ""
    body_text: str = ""
    sent_at: datetime | None = None
    received_at: datetime | None = None
    sensitivity: Sensitivity = Sensitivity.NORMAL
    is_draft: bool = False
    # True when the connector cut the recipient list or body (recorded, never silently).
    truncated: bool = False
    # Recipients left out past MAX_RECIPIENTS (counted in the run record, per folder).
    recipients_cut: int = 0

    @property
    def when(self) -> datetime | None:
        """The moment that dates the email (sent for Sent Items, received otherwise)."""
        return self.sent_at if self.folder is Folder.SENT and self.sent_at else (self.received_at or self.sent_at)

    # Cached (the item never changes): filters, matching and mapping ask for it five times an email.
    @cached_property
    def participants(self) -> tuple[Address, ...]:
        """Sender and recipients, each address once."""
        seen: dict[str, Address] = {}
        for addr in (self.sender, *self.to, *self.cc):
            if addr is not None and addr.email not in seen:
                seen[addr.email] = addr
        return tuple(seen.values())

    @property
    def dedup_key(self) -> str:
        """The Message-ID, or a stable hash of sender, date and subject when there is none."""
        # The sent time is the same in the sender's Sent Items and every recipient's Inbox; the
        # received time differs per copy, so it is only the fallback.
        return self.message_id or synthetic_message_id(self.sender, self.sent_at or self.received_at, self.subject)


@dataclass(frozen=True)
class EventItem:
    """A calendar event (one occurrence or a single meeting), normalised."""

    remote_id: str
    uid: str  # iCalendar UID (Graph iCalUId, EWS UID): the same meeting in every invitee's mailbox
    subject: str = ""
    body_text: str = ""
    location: str = ""
    start: datetime | None = None
    end: datetime | None = None
    # All-day: ``start`` is midnight UTC of the first day and ``end`` midnight UTC of the day after
    # the last, whatever the zones of the mailbox or the server (the date is what counts).
    is_all_day: bool = False
    organizer: Address | None = None
    attendees: tuple[Address, ...] = ()
    sensitivity: Sensitivity = Sensitivity.NORMAL
    is_cancelled: bool = False
    is_recurring: bool = False
    # For occurrences of a series: the original start, which with ``uid`` names one occurrence.
    occurrence_start: datetime | None = None
    # For occurrences: the provider's id of the series master, when a deletion of the whole series
    # carries only that id (Exchange); "" otherwise.
    series_id: str = ""
    truncated: bool = False
    # Attendees left out past MAX_RECIPIENTS (counted in the run record).
    recipients_cut: int = 0

    @cached_property
    def participants(self) -> tuple[Address, ...]:
        """Organizer and attendees, each address once."""
        seen: dict[str, Address] = {}
        for addr in (self.organizer, *self.attendees):
            if addr is not None and addr.email not in seen:
                seen[addr.email] = addr
        return tuple(seen.values())

    @property
    def dedup_key(self) -> str:
        """UID, plus the occurrence start for one occurrence of a series."""
        if self.occurrence_start is not None:
            return f"{self.uid}@{self.occurrence_start.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
        return self.uid

    @property
    def duration(self) -> timedelta | None:
        """End minus start, when both are known."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


@dataclass(frozen=True)
class Deletion:
    """An item that left the folder (deleted, moved away); ``folder`` says which cursor saw it."""

    remote_id: str
    folder: Folder


@dataclass
class ChangePage:
    """One page of changes for one folder, and the cursor valid after it."""

    folder: Folder
    emails: list[EmailItem] = field(default_factory=list)
    events: list[EventItem] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)
    cursor: str = ""
    # True on the last page of this folder for this run.
    last: bool = False
    # True when the connector had to start over (expired cursor) and re-read the window.
    resynced: bool = False
    # Items the server sent that could not be read (malformed): counted, never silently dropped.
    unreadable: int = 0


@dataclass(frozen=True)
class SyncWindow:
    """How far back a first run (or a resync) reads."""

    mail_since: datetime
    events_from: datetime
    events_to: datetime

    @staticmethod
    def starting(now: datetime, backfill_days: int, caught_up_at: float = 0.0) -> SyncWindow:
        """The window for a run that starts at ``now``.

        A first run reads ``backfill_days`` of mail. The window is also what a connector re-reads
        when a cursor is lost or expired: then it reaches back to ``caught_up_at`` (when the last
        complete run started; 0 for none), so mail that arrived while sync was stopped is not lost.
        """
        mail_since = now - timedelta(days=backfill_days)
        if caught_up_at > 0:
            resume = datetime.fromtimestamp(caught_up_at, tz=UTC) - timedelta(days=RESYNC_MARGIN_DAYS)
            mail_since = min(mail_since, max(resume, now - timedelta(days=RESYNC_MAX_DAYS)))
        return SyncWindow(
            mail_since=mail_since,
            events_from=now - timedelta(days=EVENT_LOOKBACK_DAYS),
            events_to=now + timedelta(days=EVENT_LOOKAHEAD_DAYS),
        )


@dataclass(frozen=True)
class MailboxIdentity:
    """Who a mailbox is: its primary SMTP address and every alias it receives mail for."""

    primary: str
    aliases: frozenset[str] = frozenset()
    display_name: str = ""

    def addresses(self) -> frozenset[str]:
        """The primary address and aliases, lower-cased."""
        return frozenset({self.primary.lower(), *(a.lower() for a in self.aliases)})

    def matches(self, address: str) -> bool:
        """True when ``address`` is this mailbox (primary or alias), ignoring case."""
        return address.strip().lower() in self.addresses()


@runtime_checkable
class Mailbox(Protocol):
    """What the sync engine needs from a mailbox connector."""

    provider: ClassVar[str]

    def identity(self) -> MailboxIdentity:
        """The mailbox's primary address and aliases (one cheap call; proves the credentials)."""
        ...

    def read_changes(
        self, cursors: Mapping[str, str], window: SyncWindow, folders: tuple[Folder, ...] = ...
    ) -> Iterator[ChangePage]:
        """Yield pages of changes since ``cursors`` (a missing cursor reads ``window``)."""
        ...

    @property
    def calls(self) -> int:
        """Requests made to the service so far (for the run record)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def synthetic_message_id(sender: Address | None, when: datetime | None, subject: str) -> str:
    """A stable stand-in Message-ID for mail that has none: a hash of sender, date and subject."""
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") if when else ""
    raw = "\x1f".join(((sender.email if sender else ""), stamp, subject.strip()))
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@sidebar-sync.invalid>"


def bound_text(text: str | None, limit: int = MAX_BODY_CHARS) -> tuple[str, bool]:
    """Cut text to ``limit`` characters with a visible marker; returns (text, truncated)."""
    value = text or ""
    if len(value) <= limit:
        return value, False
    keep = max(0, limit - len(BODY_TRUNCATION_MARKER))
    return value[:keep] + BODY_TRUNCATION_MARKER, True


def valid_text(value: str) -> str:
    """``value`` with lone surrogates replaced by "?" (it encodes as UTF-8 then, which keys, hashes and JSON need).

    Headers in odd charsets decode with ``surrogateescape`` into lone surrogates, and a JSON answer
    may hold one as an escape; an identifier holding one would fail every encode downstream.
    """
    if value.isascii():
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


def normalise_message_id(value: str | None) -> str:
    """Internet Message-IDs compare as ``<local@domain>``, stripped of whitespace."""
    raw = valid_text((value or "").strip())
    if not raw:
        return ""
    if not raw.startswith("<"):
        raw = "<" + raw
    if not raw.endswith(">"):
        raw = raw + ">"
    return raw
