"""The calendar's horizon on Exchange: meetings already there beyond it are read once they come near.

SyncFolderItems reports changes, not dates: a meeting that was in the calendar beyond the first
pass's ceiling (90 days ahead) is never reported again unless it changes, and a series' occurrences
are expanded over the window only when its master changes. Graph's and Google's calendar views roll
their range forward; this does the same for Exchange: once a day at most, one FindItem with a
``CalendarView`` over the days that came within the window since (singles and occurrences alike,
Exchange expands the recurrences), and GetItem for those starting in them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from exchangelib.items import ID_ONLY, CalendarItem
from exchangelib.services import GetItem

from backend.connectors.exchange.cursor import Cursor
from backend.connectors.exchange.items import event_item, field_paths, utc_of
from backend.connectors.exchange.series import GET_ITEM_CHUNK, OCCURRENCE_FIELDS, calendar_view
from backend.connectors.mailbox import EventItem

# The horizon moves when it is at least this far behind the window's end (a roll is two calls).
ROLL_STEP = timedelta(days=1)


def behind(cursor: Cursor, window_start: datetime, window_end: datetime) -> datetime | None:
    """Where a roll of ``cursor`` starts, or None when none is due (first pass not done, or a day yet to go)."""
    if cursor.ceiling is not None or not cursor.state:
        return None  # the first pass reads up to its ceiling itself
    # An older cursor does not know its horizon: the window is read once.
    start = max(cursor.horizon or window_start, window_start)
    return start if window_end - start >= ROLL_STEP else None


def roll(account: Any, folder: Any, start: datetime, end: datetime, cursor: Cursor,
         item_error: Callable[[Exception], int]) -> tuple[list[EventItem], int]:
    """The meetings (singles and occurrences) starting in ``[start, end)``, and how many were unreadable.

    An item answered with an error goes to ``item_error`` (the reader's: gone, "not now" raised, or
    counted unreadable), as on the reader's own path: the horizon never moves past one in silence.
    """
    version = account.version
    listed = calendar_view(account, folder, start, end)
    unreadable = 0
    wanted = []
    for item in listed:
        if isinstance(item, Exception):
            unreadable += item_error(item)
        # Only those starting in the new days: one that started earlier was inside the horizon already.
        elif isinstance(item, CalendarItem) and (utc_of(item.start) or end) >= start:
            wanted.append(item)
    events: list[EventItem] = []
    if wanted:
        fields = field_paths(CalendarItem, OCCURRENCE_FIELDS, version, with_body=True)
        for full in GetItem(account=account, chunk_size=GET_ITEM_CHUNK).call(items=wanted, additional_fields=fields,
                                                                            shape=ID_ONLY):
            if isinstance(full, Exception):
                unreadable += item_error(full)
            elif isinstance(full, CalendarItem):
                event = event_item(full, cursor)
                if event is not None:
                    events.append(event)
    return events, unreadable
