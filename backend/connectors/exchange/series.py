"""Recurring series on Exchange as the occurrences inside the sync window, as Graph's calendarView gives them.

SyncFolderItems reports a series as its master, and a moved, retitled or deleted occurrence as an
update of that master. For each master that changed, one FindItem with a ``CalendarView`` over the
window lists the occurrences (Exchange expands the recurrence, applies the exceptions and leaves
deleted occurrences out); GetItem fetches the ones of the changed series with their bodies and
``OriginalStart``. Each occurrence is an :class:`EventItem` keyed by UID + original start, the same
key Graph and Google give the same occurrence. An occurrence the organiser deleted
(``DeletedOccurrences`` of the master) inside the window is yielded as cancelled, so a logged one
is cancelled like a cancelled meeting; an invitee's deletion cancels nothing, as on Graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from exchangelib.ewsdatetime import EWSDateTime
from exchangelib.items import ID_ONLY, CalendarItem
from exchangelib.properties import CalendarView
from exchangelib.services import FindItem, GetItem

from backend.connectors.exchange.cursor import Cursor
from backend.connectors.exchange.items import EVENT_FIELDS, address_of, addresses_of, event_item, field_paths, utc_of
from backend.connectors.mailbox import EventItem, SyncWindow

SERIES_FIELDS = ("uid", "start", "end", "type")
OCCURRENCE_FIELDS = (*EVENT_FIELDS, "original_start")
# Items one CalendarView may list (Exchange's default FindItem limit); the view spans the window only
# from the earliest changed series' start, so only a calendar this full in that span reaches it.
VIEW_PAGE = 1000
GET_ITEM_CHUNK = 64


def expand(account: Any, folder: Any, masters: Sequence[Any], window: SyncWindow, cursor: Cursor,
           own_address: str) -> list[EventItem]:
    """The occurrences (and deleted occurrences) inside ``window`` of the changed series ``masters``."""
    by_uid = {m.uid: m for m in masters if m.uid}
    if not by_uid:
        return []
    version = account.version
    # No occurrence starts before its series does: the view begins at the earliest changed series.
    earliest = min((s for s in (utc_of(m.start) for m in by_uid.values()) if s is not None),
                   default=window.events_from)
    view_from = max(window.events_from, earliest - timedelta(days=1))
    listed = calendar_view(account, folder, min(view_from, window.events_to), window.events_to)
    wanted = [i for i in listed if isinstance(i, CalendarItem) and i.uid in by_uid
              and i.type in ("Occurrence", "Exception")]
    events: list[EventItem] = []
    if wanted:
        fields = field_paths(CalendarItem, OCCURRENCE_FIELDS, version, with_body=True)
        for full in GetItem(account=account, chunk_size=GET_ITEM_CHUNK).call(items=wanted, additional_fields=fields,
                                                                            shape=ID_ONLY):
            if isinstance(full, CalendarItem):
                event = event_item(full, cursor)
                if event is not None:
                    master = by_uid.get(full.uid)
                    events.append(replace(event, series_id=master.id if master is not None else ""))
    for master in by_uid.values():
        events.extend(_deleted(master, window, own_address))
    return events


def calendar_view(account: Any, folder: Any, start: datetime, end: datetime) -> Any:
    """FindItem with a CalendarView over ``start``-``end``: singles, occurrences, exceptions (ids, starts, types)."""
    view = CalendarView(start=EWSDateTime.from_datetime(start), end=EWSDateTime.from_datetime(end), max_items=VIEW_PAGE)
    return FindItem(account=account, page_size=VIEW_PAGE).call(
        folders=[folder], additional_fields=field_paths(CalendarItem, SERIES_FIELDS, account.version),
        restriction=None, order_fields=None, shape=ID_ONLY, query_string=None, depth="Shallow", calendar_view=view,
        max_items=None, offset=0)


def _deleted(master: Any, window: SyncWindow, own_address: str) -> list[EventItem]:
    """The occurrences the organiser deleted from ``master`` inside the window, as cancelled items."""
    organizer = address_of(master.organizer)
    if organizer is None or organizer.email != own_address:
        return []
    attendees, _ = addresses_of([*(master.required_attendees or []), *(master.optional_attendees or [])])
    length = (utc_of(master.end) - utc_of(master.start)) if master.start and master.end else None  # type: ignore[operator]
    found = []
    for gone in master.deleted_occurrences or []:
        start = utc_of(getattr(gone, "start", None))
        if start is None or not window.events_from <= start <= window.events_to:
            continue
        found.append(EventItem(remote_id="", uid=master.uid, subject=master.subject or "", start=start,
                               end=start + length if length is not None else None, organizer=organizer,
                               attendees=attendees, is_cancelled=True, is_recurring=True, occurrence_start=start,
                               series_id=master.id))
    return found
