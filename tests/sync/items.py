"""Builders of normalised mail items, and an in-memory Mailbox for pure-logic engine tests.

End-to-end tests use real connectors against their wire-level fakes (``tests/connectors``); the
:class:`ListMailbox` here only serves unit tests of the engine's own logic (batching, cursors,
filters, counts), as the brief allows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from backend.connectors.mailbox import (
    Address,
    ChangePage,
    Deletion,
    EmailItem,
    EventItem,
    Folder,
    MailboxIdentity,
    Sensitivity,
    SyncWindow,
)
from backend.errors import AuthRevoked

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
OWNER = "rep@acme.example"


def addr(value: str, name: str = "") -> Address:
    """An address (normalised as connectors do)."""
    result = Address.of(value, name)
    assert result is not None
    return result


def mail(
    sender: str = "bob@customer.example",
    to: tuple[str, ...] = (OWNER,),
    cc: tuple[str, ...] = (),
    *,
    subject: str = "Quote",
    body: str = "Hello",
    message_id: str | None = None,
    folder: Folder = Folder.INBOX,
    sensitivity: Sensitivity = Sensitivity.NORMAL,
    when: datetime = NOW,
    draft: bool = False,
    remote_id: str = "",
    received: datetime | None = None,
) -> EmailItem:
    """An email item (``received`` defaults to ``when``, the sent time)."""
    mid = message_id if message_id is not None else f"<{abs(hash((sender, to, subject, when)))}@mail.example>"
    return EmailItem(
        remote_id=remote_id or mid or f"r-{abs(hash((sender, subject, folder)))}", folder=folder, message_id=mid,
        sender=Address.of(sender),
        to=tuple(a for a in (Address.of(t) for t in to) if a), cc=tuple(a for a in (Address.of(c) for c in cc) if a),
        subject=subject, body_text=body, sent_at=when, received_at=received or when, sensitivity=sensitivity,
        is_draft=draft,
    )


def meeting(
    attendees: tuple[str, ...] = ("bob@customer.example",),
    *,
    organizer: str = OWNER,
    uid: str = "uid-1",
    subject: str = "Demo",
    start: datetime | None = NOW,
    hours: float | None = 1.0,
    cancelled: bool = False,
    sensitivity: Sensitivity = Sensitivity.NORMAL,
    all_day: bool = False,
) -> EventItem:
    """An event item."""
    end = start + timedelta(hours=hours) if start is not None and hours is not None else None
    return EventItem(
        remote_id=f"ev-{uid}", uid=uid, subject=subject, body_text="Agenda", location="Room 1", start=start, end=end,
        is_all_day=all_day, organizer=Address.of(organizer),
        attendees=tuple(a for a in (Address.of(x) for x in attendees) if a), sensitivity=sensitivity,
        is_cancelled=cancelled,
    )


@dataclass
class ListMailbox:
    """A Mailbox over lists of items: cursors are positions, pages hold ``page_size`` items.

    A :class:`Deletion` added to a folder is reported in the page that reaches it.
    """

    provider: ClassVar[str] = "list"
    items: dict[str, list[EmailItem | EventItem | Deletion]] = field(default_factory=dict)
    page_size: int = 50
    requests: int = 0
    revoked: bool = False
    # Raised by the next reads (transient trouble on the mail server), when set.
    error: Exception | None = None
    closed: bool = False
    # Seconds each folder read takes (a slow mail server).
    delay: float = 0.0
    # The window of every read, for tests of what a resync would reach back to.
    windows: list[SyncWindow] = field(default_factory=list)

    def add(self, folder: str, item: EmailItem | EventItem | Deletion) -> None:
        """Put an item in a folder."""
        self.items.setdefault(folder, []).append(item)

    def identity(self) -> MailboxIdentity:
        """The owner."""
        self.requests += 1
        return MailboxIdentity(primary=OWNER)

    def read_changes(
        self, cursors: Mapping[str, str], window: SyncWindow, folders: tuple[Folder, ...] = tuple(Folder)
    ) -> Iterator[ChangePage]:
        """Pages of the items after each folder's cursor position."""
        self.windows.append(window)
        if self.delay:
            time.sleep(self.delay)
        for folder in folders:
            self.requests += 1
            if self.revoked:
                raise AuthRevoked("refused")
            if self.error is not None:
                raise self.error
            items = self.items.get(folder.value, [])
            position = int(cursors.get(folder.value, "0") or 0)
            if position >= len(items):
                yield ChangePage(folder=folder, cursor=str(len(items)), last=True)
                continue
            while position < len(items):
                chunk = items[position:position + self.page_size]
                position += len(chunk)
                page = ChangePage(folder=folder, cursor=str(position), last=position >= len(items))
                for item in chunk:
                    if isinstance(item, Deletion):
                        page.deletions.append(item)
                    elif isinstance(item, EventItem):
                        page.events.append(item)
                    else:
                        page.emails.append(item)
                yield page
                if position < len(items):
                    self.requests += 1

    @property
    def calls(self) -> int:
        """Requests made."""
        return self.requests

    def close(self) -> None:
        """Nothing to release."""
        self.closed = True
