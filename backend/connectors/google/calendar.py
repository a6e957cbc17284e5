"""The primary calendar through ``events.list`` (``singleEvents=true``): a full round, then sync tokens.

The first round reads from ``timeMin`` (the window's start, 14 days back) and pages through
``nextPageToken``; ``nextSyncToken`` is on its last page only and starts every later round, which
returns only what changed. A 410 Gone (or a saved page token Google no longer takes) is one full
resync of the window per run; meetings already yielded this run are not yielded again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from backend.connectors.google.cursor import CalendarCursor, load_calendar
from backend.connectors.google.http import GoogleClient
from backend.connectors.google.items import parse_event
from backend.connectors.mailbox import ChangePage, Deletion, Folder, SyncWindow
from backend.errors import CursorExpired, Unavailable
from backend.security.crypto import fingerprint

log = logging.getLogger(__name__)

PAGE_SIZE = "250"
EVENTS_UNITS = 1


def rfc3339(window: SyncWindow) -> str:
    """The window's event start in the form ``timeMin`` takes."""
    return window.events_from.strftime("%Y-%m-%dT%H:%M:%SZ")


class CalendarRead:
    """One run's read of the primary calendar."""

    def __init__(self, client: GoogleClient, window: SyncWindow) -> None:
        self.client = client
        self.window = window
        self.url = f"{client.settings.GOOGLE_CALENDAR_API_URL.rstrip('/')}/calendars/primary/events"
        self.seen: set[str] = set()
        self.resynced = False

    def pages(self, raw: str) -> Iterator[ChangePage]:
        """Pages of calendar changes since the saved cursor ``raw`` (the window when there is none)."""
        cursor = load_calendar(raw) if raw else None
        if raw and cursor is None:
            self.resynced = True
        if cursor is None:
            cursor = CalendarCursor("t", rfc3339(self.window))
        while True:
            try:
                page, cursor = self._page(cursor)
            except CursorExpired:
                if self.resynced:
                    raise
                log.info("google calendar sync token expired; resyncing the window")
                self.resynced = True
                cursor = CalendarCursor("t", rfc3339(self.window))
                continue
            yield page
            if page.last:
                return

    def _page(self, cursor: CalendarCursor) -> tuple[ChangePage, CalendarCursor]:
        params = [("singleEvents", "true"), ("maxResults", PAGE_SIZE)]
        params.append(("timeMin", cursor.value) if cursor.mode == "t" else ("syncToken", cursor.value))
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
            after = CalendarCursor(cursor.mode, cursor.value, following)
        elif sync_token:
            after = CalendarCursor("s", sync_token)
        else:
            raise Unavailable("Google Calendar returned a last page without a sync token.")
        page = ChangePage(folder=Folder.CALENDAR, cursor=after.dump(), last=not following, resynced=self.resynced)
        for entry in body.get("items") or []:
            if not isinstance(entry, dict) or not entry.get("id"):
                continue
            remote_id = str(entry["id"])
            try:
                item = parse_event(entry)
            except (KeyError, TypeError, ValueError, AttributeError):
                log.warning("google event skipped (unreadable) id=%s", fingerprint(remote_id))
                page.unreadable += 1
                continue
            if isinstance(item, Deletion):
                page.deletions.append(item)
                self.seen.discard(remote_id)
                continue
            if remote_id in self.seen:
                continue  # after a resync the window is read again
            self.seen.add(remote_id)
            page.events.append(item)
        return page, after
