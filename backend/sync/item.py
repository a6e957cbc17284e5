"""Log it now: one item of the person's mailbox, through the run's own path, on request.

The item is read from the mailbox by the connector (never taken from the pane), checked to be the
item asked about, and handed to a :class:`~backend.sync.run.MailboxRun` whose filters are those of
"Log it now" (:meth:`Filters.for_one_item`: the person's own choices give way, private items and the
org's blocklist do not). Claims, matching, the write plan, refusals and the trail are the run's.
Works while sync is paused; the run is recorded in the history as ``log_now``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from backend.connectors.mailbox import EmailItem, EventItem, normalise_message_id
from backend.errors import ConnectorError
from backend.store.mailboxes import SyncState
from backend.sync.collaborators import mailbox_for
from backend.sync.engine import SyncEngine, error_of, run_record
from backend.sync.policy import effective_settings
from backend.sync.run import MailboxRun

log = logging.getLogger(__name__)


class LogItemRefused(Exception):
    """Log it now cannot go on: an HTTP status, a code and words for the person."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ItemReader(Protocol):
    """A mailbox connector that reads one item by the id Outlook gives it."""

    def fetch_item(self, kind: str, item_id: str) -> EmailItem | EventItem | None:
        """The item (``kind`` "email" or "event"), or None when the mailbox has no such item."""
        ...


def _same(item: EmailItem | EventItem, kind: str, identifier: str) -> bool:
    if kind == "email":
        return isinstance(item, EmailItem) and \
            normalise_message_id(item.dedup_key).lower() == normalise_message_id(identifier).lower()
    return isinstance(item, EventItem) and identifier in (item.uid, item.dedup_key)


def log_item(engine: SyncEngine, mailbox_id: str, identifier: str, kind: str, item_id: str) -> dict[str, Any]:
    """Read one item and log it through the run's path; returns the run record (counts, no content)."""
    store = engine.store
    mailbox = store.mailboxes.get(mailbox_id)
    if mailbox is None or mailbox.state not in (SyncState.RUNNING, SyncState.PAUSED):
        raise LogItemRefused(409, "invalid_state", "Sync is not set up for this mailbox. Set it up first.")
    user = store.users.get(mailbox.user_id)
    if user is None:
        raise LogItemRefused(409, "invalid_state", "Log in to Salesforce again first.")
    org = store.orgs.get(mailbox.org_id)
    mailbox.settings = effective_settings(org, mailbox.settings)  # the org's locked values win
    started = time.time()
    run = MailboxRun(store, engine.settings, engine.clients, mailbox, user, org, interactive=True, trigger="log_now")
    run.filters = run.filters.for_one_item()
    error: dict[str, Any] | None = None
    try:
        run.connector = mailbox_for(engine.settings, store, engine.clients, mailbox)
        reader = getattr(run.connector, "fetch_item", None)
        if reader is None:
            raise LogItemRefused(501, "not_supported", "This mailbox cannot log a single item yet; the next run "
                                                       "looks at it.")
        item = reader(kind, item_id)
        if item is None or not _same(item, kind, identifier):
            raise LogItemRefused(404, "item_not_found", "Sidebar Sync could not find this item in your synced "
                                                        "mailbox.")
        emails = [item] if isinstance(item, EmailItem) else []
        events = [item] if isinstance(item, EventItem) else []
        run.count_read([])
        run.counts.read += 1
        kept = run.keep_items(emails, events)
        run.phase = "salesforce"
        if kept:
            run.write([i for i in kept if isinstance(i, EmailItem)], [i for i in kept if isinstance(i, EventItem)])
        run.trail.save()
    except LogItemRefused:
        raise
    except ConnectorError as exc:
        error = error_of(exc, run.phase)
        raise LogItemRefused(502, exc.code, f"The item could not be logged: {exc.message}") from None
    finally:
        run.close()
        if error is not None or run.counts.read:
            store.runs.record(mailbox.id, run_record(run, started, int((time.time() - started) * 1000),
                                                     "error" if error else "ok", error))
    return {"counts": run.counts.as_dict()}


def meeting_key(engine: SyncEngine, mailbox_id: str, item_id: str) -> str:
    """The key of the meeting Outlook shows by ``item_id`` (its UID, ``UID@start`` for an occurrence), or ""."""
    mailbox = engine.store.mailboxes.get(mailbox_id)
    if mailbox is None or not mailbox.activated:
        return ""
    connector = mailbox_for(engine.settings, engine.store, engine.clients, mailbox)
    try:
        reader = getattr(connector, "fetch_item", None)
        item = reader("event", item_id) if reader is not None else None
    except ConnectorError as exc:
        log.info("meeting uid look-up failed mid=%s code=%s", mailbox_id, exc.code)
        return ""
    finally:
        connector.close()
    # Office.js exposes no UID; and the series' UID alone would name every occurrence at once, so
    # the answer is the occurrence's own key, the one its trail entry and its Salesforce Event hold.
    return item.dedup_key if isinstance(item, EventItem) else ""
