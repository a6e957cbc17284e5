"""Gmail mail per folder (INBOX, SENT): the backfill through ``messages.list`` and the changes through ``history.list``.

A first round takes the profile's ``historyId`` **before** listing, so nothing that arrives during
the backfill is missed, then lists the folder's label with ``q=after:<epoch>`` (500 ids a page,
every ``nextPageToken``) and fetches the messages in batches of at most 50. Later rounds read
``history.list`` from the saved id (``messageAdded``/``labelAdded`` bring mail into the folder,
``messageDeleted``/``labelRemoved`` take it out), every page; the id the last page reports is the
next start. A 404 (history no longer kept) or a saved page token Google no longer takes is one
bounded resync of the window; Salesforce dedup by Message-ID keeps it harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from backend.connectors.google.cursor import MailCursor, load_mail
from backend.connectors.google.http import GoogleClient, check
from backend.connectors.google.items import FOLDER_LABELS, NEVER_LOGGED, parse_message
from backend.connectors.mailbox import UNREADABLE_ITEM_ERRORS, ChangePage, Deletion, EmailItem, Folder, SyncWindow
from backend.errors import CursorExpired, Unavailable
from backend.security.crypto import fingerprint

log = logging.getLogger(__name__)

LIST_UNITS = 5
GET_UNITS = 5
HISTORY_UNITS = 2
PAGE_SIZE = "500"
HISTORY_TYPES = ("messageAdded", "labelAdded", "messageDeleted", "labelRemoved")
MESSAGE_FIELDS = "id,threadId,labelIds,internalDate,payload"
USER_PATH = "/gmail/v1/users/me"


class FolderRead:
    """One run's read of one mail folder."""

    def __init__(self, client: GoogleClient, folder: Folder, window: SyncWindow,
                 start_history: Callable[[], str]) -> None:
        self.client = client
        self.folder = folder
        self.label = FOLDER_LABELS[folder]
        self.window = window
        self.start_history = start_history
        self.root = client.gmail_root + USER_PATH
        self.seen: set[str] = set()
        self.resynced = False

    def pages(self, raw: str) -> Iterator[ChangePage]:
        """Pages of the folder since the saved cursor ``raw`` (the window when there is none)."""
        cursor = load_mail(raw, self.label) if raw else None
        if raw and cursor is None:
            log.info("gmail cursor for %s unreadable; resyncing", self.folder.value)
            self.resynced = True
        if cursor is None:
            cursor = MailCursor(self.label, self.start_history(), "list", "")
        elif not cursor.mode:
            cursor = MailCursor(self.label, cursor.history_id, "hist", "")
        while True:
            try:
                if cursor.mode == "list":
                    page, cursor = self._list_page(cursor)
                else:
                    page, cursor = self._history_page(cursor)
            except CursorExpired:
                if self.resynced:
                    raise  # bounded: one resync per folder per run
                log.info("gmail history for %s expired; resyncing from the window", self.folder.value)
                self.resynced = True
                cursor = MailCursor(self.label, self.start_history(), "list", "")
                continue
            yield page
            if page.last:
                return

    def _list_page(self, cursor: MailCursor) -> tuple[ChangePage, MailCursor]:
        params = [("labelIds", self.label), ("q", f"after:{int(self.window.mail_since.timestamp())}"),
                  ("maxResults", PAGE_SIZE)]
        if cursor.page_token:
            params.append(("pageToken", cursor.page_token))
        resp = self.client.get(f"{self.root}/messages", params, LIST_UNITS, accept=(400,) if cursor.page_token else ())
        if resp.status == 400:
            raise CursorExpired("Gmail no longer takes the saved list page.")
        body = resp.body if isinstance(resp.body, dict) else {}
        ids = [str(m["id"]) for m in body.get("messages") or [] if isinstance(m, dict) and m.get("id")]
        following = str(body.get("nextPageToken") or "")
        after = MailCursor(self.label, cursor.history_id, "list", following) if following \
            else MailCursor(self.label, cursor.history_id)
        page = ChangePage(folder=self.folder, cursor=after.dump(), last=not following, resynced=self.resynced)
        self._fetch(page, ids)
        return page, after

    def _history_page(self, cursor: MailCursor) -> tuple[ChangePage, MailCursor]:
        params = [("startHistoryId", cursor.history_id), ("labelId", self.label), ("maxResults", PAGE_SIZE),
                  *(("historyTypes", kind) for kind in HISTORY_TYPES)]
        if cursor.page_token:
            params.append(("pageToken", cursor.page_token))
        resp = self.client.get(f"{self.root}/history", params, HISTORY_UNITS, accept=(400, 404))
        if resp.status in (400, 404):
            raise CursorExpired(f"Gmail no longer keeps the history since the saved id ({resp.status}).")
        body = resp.body if isinstance(resp.body, dict) else {}
        added, deleted = self._changes(body.get("history") or [])
        following = str(body.get("nextPageToken") or "")
        latest = str(body.get("historyId") or "")
        if not following and not latest.isdigit():
            raise Unavailable("Gmail returned a history page without a history id.")
        after = MailCursor(self.label, cursor.history_id, "hist", following) if following \
            else MailCursor(self.label, latest)
        page = ChangePage(folder=self.folder, cursor=after.dump(), last=not following, resynced=self.resynced)
        for remote_id in deleted:
            page.deletions.append(Deletion(remote_id=remote_id, folder=self.folder))
            self.seen.discard(remote_id)
        self._fetch(page, added)
        return page, after

    def _changes(self, records: list[Any]) -> tuple[list[str], list[str]]:
        """(ids that came into the folder, ids that left it) from history records, in order, net."""
        added: dict[str, None] = {}
        deleted: dict[str, None] = {}

        def arrive(ref: Any, labels: list[str]) -> None:
            if isinstance(ref, dict) and ref.get("id") and self.label in labels and not set(labels) & NEVER_LOGGED:
                added[str(ref["id"])] = None
                deleted.pop(str(ref["id"]), None)

        def leave(ref: Any) -> None:
            if isinstance(ref, dict) and ref.get("id"):
                deleted[str(ref["id"])] = None
                added.pop(str(ref["id"]), None)

        for record in records:
            if not isinstance(record, dict):
                continue
            for entry in record.get("messagesAdded") or []:
                message = entry.get("message") or {}
                arrive(message, list(message.get("labelIds") or []))
            for entry in record.get("labelsAdded") or []:
                if self.label in (entry.get("labelIds") or []):
                    message = entry.get("message") or {}
                    arrive(message, list(message.get("labelIds") or []))
            for entry in record.get("messagesDeleted") or []:
                leave(entry.get("message"))
            for entry in record.get("labelsRemoved") or []:
                if self.label in (entry.get("labelIds") or []):
                    leave(entry.get("message"))
        return list(added), list(deleted)

    def _fetch(self, page: ChangePage, ids: list[str]) -> None:
        """Fetch the messages of ``ids`` not yet yielded this run, in batches, into ``page``."""
        wanted = [i for i in dict.fromkeys(ids) if i not in self.seen]
        if not wanted:
            return
        paths = [f"{USER_PATH}/messages/{quote(i, safe='')}?format=full&fields={MESSAGE_FIELDS}" for i in wanted]
        for remote_id, resp in zip(wanted, self.client.batch(paths, GET_UNITS), strict=True):
            if resp.status == 404:
                continue  # deleted between the listing and the fetch
            check(resp)
            item: EmailItem | None
            try:
                item = parse_message(resp.body, self.folder)
            except UNREADABLE_ITEM_ERRORS:
                log.warning("gmail message skipped (unreadable) id=%s", fingerprint(remote_id))
                page.unreadable += 1
                continue
            self.seen.add(remote_id)
            if item is not None:
                page.emails.append(item)
