"""The calendar's ``/calendarView/delta`` over the sync window, and when its rolling range moves on.

A calendarView delta link stays bound to the date range of the round's first request. Once the
current window reaches :data:`CALENDAR_ROLL_DAYS` past that range's end, the reader first reads the
old link to its end (so no change or cancellation in between is missed) and then starts a new round
over the current window; meetings both rounds report are yielded once, and Salesforce dedup by UID
covers the rest.

A meeting moved outside the range also arrives as ``@removed``: each calendar removal is confirmed
with a GET of the event (:func:`event_path`, in one ``$batch``) before it counts as a deletion.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from backend.connectors.graph.http import encode_query, graph_time
from backend.connectors.mailbox import SyncWindow

# A calendar round is restarted over the current window once its range ends this much earlier
# than the current window's: meetings created further ahead than the old range are then read.
CALENDAR_ROLL_DAYS = 30


def calendar_delta_path(user_path: str, window: SyncWindow) -> str:
    """The first request of a calendarView delta round over the window's event range."""
    query = {"startDateTime": graph_time(window.events_from), "endDateTime": graph_time(window.events_to)}
    return f"{user_path}/calendarView/delta?{encode_query(query)}"


def range_is_stale(range_end: float | None, window: SyncWindow) -> bool:
    """True when a round's range (its end, None when unknown) should roll forward to the current window."""
    roll_before = (window.events_to - timedelta(days=CALENDAR_ROLL_DAYS)).timestamp()
    return range_end is None or range_end <= roll_before


def event_path(user_path: str, event_id: str) -> str:
    """One event by id: how a calendar ``@removed`` is confirmed (404: gone; else moved or cancelled)."""
    return f"{user_path}/events/{quote(event_id, safe='')}"
