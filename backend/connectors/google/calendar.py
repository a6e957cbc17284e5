"""The primary calendar through ``events.list`` (``singleEvents=true``): a full round, then sync tokens.

A full round reads the window (``timeMin``/``timeMax``: 14 days back, 90 ahead), recurring series
as their instances, each keyed by the series' ``iCalUID`` and its ``originalStartTime``, and pages
through ``nextPageToken``; ``nextSyncToken`` is on its last page only and starts every later round,
which returns only what changed (a moved instance as itself, a cancelled one or a deleted event as
``status: "cancelled"``, a changed series as all its instances). Instances a sync round reports
entirely outside the window are left for the round that reaches them: like Graph's calendar range,
the round restarts over the current window once its range ends :data:`CALENDAR_ROLL_DAYS` earlier
than the window's (the old round is read to its end first). A 410 Gone (or a saved page token
Google no longer takes) is one full resync of the window per run; meetings already yielded this run
are not yielded again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from backend.connectors.google.cursor import CalendarCursor, load_calendar
from backend.connectors.google.http import GoogleClient
from backend.connectors.google.items import parse_event
from backend.connectors.mailbox import UNREADABLE_ITEM_ERRORS, ChangePage, Deletion, EventItem, Folder, SyncWindow
from backend.errors import CursorExpired, Unavailable
from backend.security.crypto import fingerprint

log = logging.getLogger(__name__)

PAGE_SIZE = "250"
EVENTS_UNITS = 1
# As Graph's calendarView range (connectors/graph/calendar.py): a round whose range ends this much
# before the current window's is restarted, so series occurrences entering the window are read.
CALENDAR_ROLL_DAYS = 30


def rfc3339(moment: datetime) -> str:
    """A moment in the form ``timeMin``/``timeMax`` take."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def range_is_stale(range_end: int, window: SyncWindow) -> bool:
    """True when a round's range (its end in epoch seconds, 0 when unknown) should roll to the current window."""
    return range_end <= (window.events_to - timedelta(days=CALENDAR_ROLL_DAYS)).timestamp()


def outside(event: EventItem, window: SyncWindow) -> bool:
    """True for a series instance both now and originally outside the window (Exchange and Graph do not read it)."""
    if not event.is_recurring or event.start is None:
        return False
    moments = [m for m in (event.start, event.occurrence_start) if m is not None]
    end = event.end or event.start
    return all(m > window.events_to for m in moments) or (end < window.events_from and
                                                          all(m < window.events_from for m in moments))


class CalendarRead:
    """One run's read of the primary calendar."""

    def __init__(self, client: GoogleClient, window: SyncWindow) -> None:
        self.client = client
        self.window = window
        self.url = f"{client.settings.GOOGLE_CALENDAR_API_URL.rstrip('/')}/calendars/primary/events"
        self.seen: set[str] = set()
        self.resynced = False

    def full_round(self) -> CalendarCursor:
        """The start of a full round over the current window."""
        return CalendarCursor("t", rfc3339(self.window.events_from), range_end=int(self.window.events_to.timestamp()))

    def pages(self, raw: str) -> Iterator[ChangePage]:
        """Pages of calendar changes since the saved cursor ``raw`` (the window when there is none)."""
        cursor = load_calendar(raw) if raw else None
        if raw and cursor is None:
            self.resynced = True
        if cursor is None:
            cursor = self.full_round()
        rolled = False
        while True:
            try:
                page, cursor = self._page(cursor)
            except CursorExpired:
                if self.resynced:
                    raise
                log.info("google calendar sync token expired; resyncing the window")
                self.resynced = True
                cursor = self.full_round()
                continue
            if page.last and not rolled and range_is_stale(cursor.range_end, self.window):
                # The old round is read to its end (its cursor saved with this page); then the window again.
                rolled = True
                page.last = False
                yield page
                log.info("google calendar range rolled forward")
                cursor = self.full_round()
                continue
            yield page
            if page.last:
                return

    def _page(self, cursor: CalendarCursor) -> tuple[ChangePage, CalendarCursor]:
        params = [("singleEvents", "true"), ("maxResults", PAGE_SIZE)]
        if cursor.mode == "t":
            params.append(("timeMin", cursor.value))
            if cursor.range_end:
                params.append(("timeMax", rfc3339(datetime.fromtimestamp(cursor.range_end, tz=UTC))))
        else:
            params.append(("syncToken", cursor.value))
        if cursor.page_token:
            params.append(("pageToken", cursor.page_token))
        saved = cursor.mode == "s" or bool(cursor.page_token)
        resp = self.client.get(self.url, params, EVENTS_UNITS, accept=(400, 410) if saved else (410,))
        if resp.status in (400, 410):
            raise CursorExpired(f"Google Calendar needs a full sync ({resp.status}).")
        body = resp.body if isinstance(resp.body, dict) else {}
        following = str(body.get("nextPageToken") or "")
        sync_token = str(body.get("nextSyncToken") or "")
        if following:
            after = CalendarCursor(cursor.mode, cursor.value, following, cursor.range_end)
        elif sync_token:
            after = CalendarCursor("s", sync_token, range_end=cursor.range_end)
        else:
            raise Unavailable("Google Calendar returned a last page without a sync token.")
        page = ChangePage(folder=Folder.CALENDAR, cursor=after.dump(), last=not following, resynced=self.resynced)
        zone = str(body.get("timeZone") or "UTC")
        for entry in body.get("items") or []:
            if not isinstance(entry, dict) or not entry.get("id"):
                continue
            self._take(page, entry, zone)
        return page, after

    def _take(self, page: ChangePage, entry: dict[str, object], zone: str) -> None:
        """Put one listed entry on ``page`` (an event, a deletion, or nothing)."""
        remote_id = str(entry["id"])
        try:
            item = parse_event(entry, zone)
        except UNREADABLE_ITEM_ERRORS:
            log.warning("google event skipped (unreadable) id=%s", fingerprint(remote_id))
            page.unreadable += 1
            return
        if isinstance(item, Deletion):
            page.deletions.append(item)
            self.seen.discard(remote_id)
            return
        if remote_id in self.seen or outside(item, self.window):
            return  # after a resync the window is read again; an instance outside it waits for the roll
        self.seen.add(remote_id)
        page.events.append(item)
