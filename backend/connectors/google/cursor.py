"""What a Gmail or Calendar folder's saved cursor holds.

Gmail's ``historyId`` is one counter for the whole mailbox, but each folder keeps its own:
``gm1|<label>|<historyId>|<mode>|<pageToken>``. Mode ``list`` is a backfill in progress (the
``historyId`` taken before listing, the next list page), ``hist`` a history round in progress (its
start, the next history page), empty a round that finished (the id the next run starts from).

The calendar's is ``gc1|<mode>|<value>|<pageToken>|<rangeEnd>``: mode ``t`` a full round in
progress (its ``timeMin``), ``s`` the sync token of the last finished round (or, with a page token,
of the round in progress); ``rangeEnd`` (epoch seconds) is the ``timeMax`` of the full round the
tokens descend from, 0 when unknown (a cursor saved before it was kept).
"""

from __future__ import annotations

from dataclasses import dataclass

_MAIL = "gm1"
_CALENDAR = "gc1"


@dataclass(frozen=True)
class MailCursor:
    """A mail folder's position."""

    label: str
    history_id: str
    mode: str = ""  # "", "list" or "hist"
    page_token: str = ""

    def dump(self) -> str:
        """The saved form."""
        return "|".join((_MAIL, self.label, self.history_id, self.mode, self.page_token))


@dataclass(frozen=True)
class CalendarCursor:
    """The calendar's position."""

    mode: str  # "t" (timeMin of a full round) or "s" (sync token)
    value: str
    page_token: str = ""
    range_end: int = 0

    def dump(self) -> str:
        """The saved form."""
        return "|".join((_CALENDAR, self.mode, self.value, self.page_token, str(self.range_end)))


def load_mail(raw: str, label: str) -> MailCursor | None:
    """A saved mail cursor for ``label``, or None (none saved, another format, another folder)."""
    parts = raw.split("|", 4)
    if len(parts) != 5 or parts[0] != _MAIL or parts[1] != label or not parts[2].isdigit():
        return None
    if parts[3] not in ("", "list", "hist") or (parts[3] and not parts[4]):
        return None
    return MailCursor(parts[1], parts[2], parts[3], parts[4])


def load_calendar(raw: str) -> CalendarCursor | None:
    """A saved calendar cursor, or None."""
    parts = raw.split("|", 4)
    if len(parts) == 4:
        parts.append("0")  # saved before the range was kept: the range is unknown
    if len(parts) != 5 or parts[0] != _CALENDAR or parts[1] not in ("t", "s") or not parts[2]:
        return None
    if (parts[1] == "t" and not parts[3]) or not parts[4].isdigit():
        return None
    return CalendarCursor(parts[1], parts[2], parts[3], int(parts[4]))
