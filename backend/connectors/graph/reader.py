"""Microsoft 365 mailboxes through Microsoft Graph delta queries: the Mailbox protocol over Graph.

Inbox and Sent Items are read with ``/mailFolders/{inbox|sentitems}/messages/delta``
(:mod:`.mail`) and the calendar with ``/calendarView/delta`` over the sync window
(:mod:`.calendar`). Every ``@odata.nextLink`` is followed; each page's cursor is its nextLink (a
crash resumes mid-round) and the last page's is the ``@odata.deltaLink`` (the next run reads only
changes; :mod:`.cursor`). ``@removed`` entries become deletions; on the calendar only once a GET of
the event confirms it is gone (a meeting moved outside the range is removed from the view, not
from the calendar: it is read as an update). A 410 on a link starts one bounded
resync of that folder from the window, skipping what this run already yielded. The first page of
several folders goes in one ``$batch``; Graph's limits are kept by :mod:`.http` and :mod:`.gate`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import requests

from backend.config import Settings
from backend.connectors.common import TokenSource
from backend.connectors.graph.calendar import calendar_delta_path, event_path, range_is_stale
from backend.connectors.graph.cursor import page_cursor, split_cursor
from backend.connectors.graph.http import GraphClient, GraphRequest, GraphResponse, check, encode_query
from backend.connectors.graph.identity import MicrosoftAuth
from backend.connectors.graph.items import (
    MESSAGE_FIELDS,
    SENSITIVITY_PROPERTY,
    identity_from,
    parse_email,
    parse_event,
)
from backend.connectors.graph.mail import messages_delta_path
from backend.connectors.graph.tokens import AppOnlyTokens, MailboxTokens, StaticToken
from backend.connectors.mailbox import (
    FOLDERS,
    UNREADABLE_ITEM_ERRORS,
    ChangePage,
    Deletion,
    EmailItem,
    EventItem,
    Folder,
    MailboxIdentity,
    SyncWindow,
)
from backend.errors import CursorExpired, Unavailable
from backend.security.crypto import fingerprint

log = logging.getLogger(__name__)


@dataclass
class _Round:
    """Where a folder's read starts: the path, the calendar range end it is bound to, and why."""

    path: str
    range_end: float
    resynced: bool = False  # the saved cursor was unusable: the window is read again
    roll: bool = False  # the calendar range is stale: read it to its end, then start a new round


class GraphMailbox:
    """The Mailbox protocol over Microsoft Graph for one mailbox."""

    provider: ClassVar[str] = "microsoft"

    def __init__(self, settings: Settings, tokens: TokenSource, gate_key: str, user_path: str = "/me",
                 session: requests.Session | None = None) -> None:
        self.settings = settings
        self.client = GraphClient(settings, tokens, gate_key, session)
        self.user_path = user_path
        self.page_size = settings.GRAPH_PAGE_SIZE

    @property
    def calls(self) -> int:
        """Graph requests made so far."""
        return self.client.calls

    def close(self) -> None:
        """Release connections."""
        self.client.close()

    def identity(self) -> MailboxIdentity:
        """Primary address and aliases from ``/me`` (or ``/users/{id}``)."""
        resp = self.client.get(f"{self.user_path}?$select=mail,userPrincipalName,proxyAddresses,displayName")
        if not isinstance(resp.body, dict):
            raise Unavailable("Microsoft Graph returned an unexpected profile.")
        return identity_from(resp.body)

    def fetch_item(self, kind: str, item_id: str) -> EmailItem | EventItem | None:
        """One email or meeting by its REST id (Outlook's ``convertToRestId``), or None when there is none."""
        safe = quote(item_id, safe="-_=")
        if kind == "event":
            path = f"{self.user_path}/events/{safe}"
            folder = Folder.CALENDAR
        else:
            query = {"$select": ",".join(MESSAGE_FIELDS),
                     "$expand": f"singleValueExtendedProperties($filter=id eq '{SENSITIVITY_PROPERTY}')"}
            path = f"{self.user_path}/messages/{safe}?{encode_query(query)}"
            folder = Folder.INBOX
        resp = self.client.get(path, self._prefer(folder), allow=(404,))
        body = resp.body
        if resp.status == 404 or not isinstance(body, dict) or not body.get("id"):
            return None
        # Sent or received: the mapping tells by the sender (one of the mailbox's own addresses).
        return parse_event(body) if kind == "event" else parse_email(body, Folder.INBOX)

    def _prefer(self, folder: Folder) -> dict[str, str]:
        prefer = f'odata.maxpagesize={self.page_size}, outlook.body-content-type="text"'
        if folder is Folder.CALENDAR:
            prefer += ', outlook.timezone="UTC"'
        return {"Prefer": prefer}

    def initial_path(self, folder: Folder, window: SyncWindow) -> str:
        """The first request of a round for ``folder`` reading the window."""
        if folder is Folder.CALENDAR:
            return calendar_delta_path(self.user_path, window)
        return messages_delta_path(self.user_path, folder, window)

    def _fresh_round(self, folder: Folder, window: SyncWindow, resynced: bool) -> _Round:
        """A round over the current window (its range ends where the window's events do)."""
        return _Round(self.initial_path(folder, window), window.events_to.timestamp(), resynced=resynced)

    def _start_path(self, folder: Folder, cursor: str, window: SyncWindow) -> _Round:
        """Where to start reading ``folder``: the saved link, or the window's first request."""
        fresh = self._fresh_round(folder, window, resynced=bool(cursor))
        if not cursor:
            return fresh
        link, range_end = split_cursor(folder, cursor)
        try:
            path = self.client.relative(link)
        except CursorExpired:
            log.warning("graph cursor for %s points elsewhere; resyncing", folder.value)
            return fresh
        mode = "/me/" if self.user_path == "/me" else "/users/"
        if not path.lower().startswith(mode):
            # Saved for the other way of addressing the mailbox (delegated vs app-only): the
            # token we hold now cannot read it.
            return fresh
        roll = folder is Folder.CALENDAR and range_is_stale(range_end, window)
        return _Round(path, range_end or 0.0, roll=roll)

    def read_changes(
        self, cursors: Mapping[str, str], window: SyncWindow, folders: tuple[Folder, ...] = tuple(Folder)
    ) -> Iterator[ChangePage]:
        """Yield pages of changes per folder; the first page of every folder comes in one ``$batch``."""
        wanted = tuple(Folder(f) for f in (folders or FOLDERS))
        starts = {f: self._start_path(f, cursors.get(f.value, ""), window) for f in wanted}
        firsts: dict[Folder, GraphResponse | None] = {f: None for f in wanted}
        if len(wanted) > 1:
            answers = self.client.batch([GraphRequest(starts[f].path, self._prefer(f)) for f in wanted])
            firsts = dict(zip(wanted, answers, strict=True))
        for folder in wanted:
            yield from self._read_folder(folder, starts[folder], firsts[folder], window)

    def _read_folder(self, folder: Folder, start: _Round, first: GraphResponse | None,
                     window: SyncWindow) -> Iterator[ChangePage]:
        seen: set[str] = set()
        path, range_end, resynced, roll = start.path, start.range_end, start.resynced, start.roll
        response = first
        while True:
            try:
                if response is None:
                    response = self.client.get(path, self._prefer(folder))
                else:
                    response = check(response)
            except CursorExpired:
                if resynced:
                    # Bounded: one resync per folder per run; the next run starts over again.
                    raise
                log.info("graph sync state expired for %s; resyncing from the window", folder.value)
                resynced, roll = True, False
                path, range_end, response = self._restart(folder, window)
                continue
            page, next_link = self._page(folder, response, seen, resynced, range_end)
            yield page
            if not next_link:
                if not roll:
                    return
                # The old range is read to its end: start a round over the current window. Not a
                # resync: a 410 in the new round may still resync once.
                log.info("graph calendar range rolled forward to the current window")
                roll = False
                path, range_end, response = self._restart(folder, window)
                continue
            try:
                path = self.client.relative(next_link)
            except CursorExpired:
                raise Unavailable("Microsoft Graph returned a link to another host.") from None
            response = None

    def _restart(self, folder: Folder, window: SyncWindow) -> tuple[str, float, None]:
        """(path, range end, no response yet) of a new round over the current window."""
        fresh = self._fresh_round(folder, window, resynced=False)
        return fresh.path, fresh.range_end, None

    def _page(self, folder: Folder, response: GraphResponse, seen: set[str],
              resynced: bool, range_end: float) -> tuple[ChangePage, str]:
        body = response.body if isinstance(response.body, dict) else {}
        next_link = str(body.get("@odata.nextLink") or "")
        delta_link = str(body.get("@odata.deltaLink") or "")
        if not next_link and not delta_link:
            raise Unavailable("Microsoft Graph returned a delta page without a link.")
        cursor = page_cursor(folder, next_link or delta_link, range_end)
        page = ChangePage(folder=folder, cursor=cursor, last=not next_link, resynced=resynced)
        removed: list[str] = []
        for entry in body.get("value") or []:
            if not isinstance(entry, dict) or not entry.get("id"):
                continue
            remote_id = str(entry["id"])
            if "@removed" in entry:
                seen.discard(remote_id)
                if folder is Folder.CALENDAR:
                    removed.append(remote_id)
                else:
                    page.deletions.append(Deletion(remote_id=remote_id, folder=folder))
                continue
            if remote_id in seen:
                # After a resync the window is read again: what this run already yielded is skipped.
                continue
            self._add_entry(page, folder, entry, seen)
        if removed:
            self._confirm_removals(page, removed, seen)
        return page, next_link

    def _add_entry(self, page: ChangePage, folder: Folder, entry: Mapping[str, Any], seen: set[str]) -> None:
        """Parse one entry into ``page`` (an unreadable one is counted, never dropped silently)."""
        remote_id = str(entry["id"])
        try:
            if folder is Folder.CALENDAR:
                page.events.append(parse_event(entry))
            else:
                page.emails.append(parse_email(entry, folder))
        except UNREADABLE_ITEM_ERRORS:
            log.warning("graph item skipped (unreadable) folder=%s id=%s", folder.value, fingerprint(remote_id))
            page.unreadable += 1
            return
        seen.add(remote_id)

    def _confirm_removals(self, page: ChangePage, removed: list[str], seen: set[str]) -> None:
        """Calendar ``@removed`` entries, confirmed: gone (404) is a deletion; a meeting that still
        exists moved outside the range (or was cancelled) and is read as an update instead."""
        answers = self.client.batch([GraphRequest(event_path(self.user_path, rid), self._prefer(Folder.CALENDAR))
                                     for rid in removed])
        for remote_id, answer in zip(removed, answers, strict=True):
            if answer.status == 404:
                page.deletions.append(Deletion(remote_id=remote_id, folder=Folder.CALENDAR))
                continue
            data = check(answer).body
            if isinstance(data, dict) and data.get("id"):
                self._add_entry(page, Folder.CALENDAR, data, seen)
            else:
                page.unreadable += 1


def graph_identity(settings: Settings, access_token: str, user_path: str = "/me",
                   session: requests.Session | None = None) -> MailboxIdentity:
    """Read who an access token's mailbox is (the consent dialog and the on-behalf-of hook use this)."""
    mailbox = GraphMailbox(settings, StaticToken(access_token), f"token:{fingerprint(access_token)}", user_path,
                           session)
    try:
        return mailbox.identity()
    finally:
        if session is None:
            mailbox.close()


def open_mailbox(ctx: Any) -> GraphMailbox:
    """The Graph connector for a sync mailbox (``ctx`` is a :class:`backend.connectors.MailboxContext`)."""
    settings: Settings = ctx.settings
    session = ctx.http_session
    auth = MicrosoftAuth(settings, session)
    connection = ctx.connection or {}
    tokens: TokenSource
    if connection.get("app_only"):
        # Tenant-wide activation: application permissions after admin consent, /users/{id} paths.
        user_id = str(connection.get("user_id") or connection.get("object_id") or ctx.address)
        tokens = AppOnlyTokens(auth, str(connection.get("tenant_id", "")))
        user_path = f"/users/{quote(user_id, safe='@.')}"
    else:
        tokens = MailboxTokens(auth, ctx.secrets, connection)
        user_path = "/me"
    return GraphMailbox(settings, tokens, ctx.mailbox_id, user_path, session or auth.session)
