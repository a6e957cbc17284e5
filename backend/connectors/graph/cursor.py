"""The saved cursor of a Graph folder: its delta or next link, and for the calendar the range it is bound to.

Mail cursors are the link itself. A calendarView delta link stays bound to the date range of its
round's first request, so a calendar cursor also records that range's end: ``cal1|<epoch>|<link>``.
"""

from __future__ import annotations

from backend.connectors.mailbox import Folder

_CALENDAR_CURSOR = "cal1"


def calendar_cursor(link: str, window_end: float) -> str:
    """A calendar cursor: the delta or next link with the end of the range it is bound to."""
    return f"{_CALENDAR_CURSOR}|{int(window_end)}|{link}"


def page_cursor(folder: Folder, link: str, range_end: float) -> str:
    """The cursor saved after a page of ``folder`` whose next (or delta) link is ``link``."""
    return calendar_cursor(link, range_end) if folder is Folder.CALENDAR else link


def split_cursor(folder: Folder, cursor: str) -> tuple[str, float | None]:
    """(link, end of the calendar range it is bound to, or None when unknown or not the calendar)."""
    if folder is Folder.CALENDAR and cursor.startswith(_CALENDAR_CURSOR + "|"):
        _, end, link = cursor.split("|", 2)
        try:
            return link, float(end)
        except ValueError:
            return link, None
    return cursor, None
