"""Reading one mailbox's changes: :class:`ExchangeMailbox`, the Mailbox protocol over EWS.

:func:`open_mailbox` (through ``backend.connectors.PROVIDERS``) builds it over the stored connection
(auth method and version are stored, so a run makes no probe calls). A request cut at its deadline
in a sync run is ``Unavailable``.

**Reading changes.** One SyncFolderHierarchy call first says which folders changed since the last
run (:mod:`.hierarchy`); an unchanged folder is not read (its page is empty, its cursor moves to the
new hierarchy state). Each other folder (Inbox, Sent Items, Calendar) is read with SyncFolderItems, at most
512 changes a call, one :class:`ChangePage` per call with the sync state valid after it, until
``IncludesLastItemInRange``; GetItem then fetches the full items that pass, in chunks.

*The bounded first run.* SyncFolderItems cannot filter by date, and a first sync without a state
enumerates the whole folder. We chose to walk that enumeration with the id-and-date shape (see
:mod:`.items`) and keep only items inside the window (mail received since ``mail_since``; events
overlapping ``events_from``..``events_to``), rather than an id-only sync to the end followed by a
FindItem restricted to the window: it costs the same SyncFolderItems calls (the ids must be walked
either way to reach a current state), needs no extra FindItem calls, and has no gap or overlap
between "state taken" and "window listed", because the listing *is* the sync. Bodies are fetched
only for the window, whose bounds travel in the cursor (see :mod:`.cursor`).

*Expired cursors.* ``ErrorInvalidSyncStateData`` (or a cursor we cannot read) restarts that folder
from the current window, once per run, and its pages say ``resynced=True``. Items re-read that way
are limited to the window and repeat only what may already be in Salesforce, where the engine
dedups by Message-ID / UID.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from exchangelib import DELEGATE, IMPERSONATION, Account
from exchangelib import errors as ews_errors
from exchangelib.folders import Calendar, Inbox, SentItems
from exchangelib.items import ID_ONLY, CalendarItem, Message
from exchangelib.properties import DistinguishedFolderId, ItemId
from exchangelib.properties import Mailbox as EwsMailbox
from exchangelib.protocol import Protocol
from exchangelib.services import GetItem, SyncFolderItems
from exchangelib.transport import NTLM

from backend.config import Settings
from backend.connectors import MailboxContext
from backend.connectors.exchange import horizon
from backend.connectors.exchange.cursor import Cursor
from backend.connectors.exchange.directory import resolve_identity
from backend.connectors.exchange.errors import translate
from backend.connectors.exchange.hierarchy import HierarchyPlan, plan_run
from backend.connectors.exchange.items import (
    EVENT_FIELDS,
    EVENT_SYNC_FIELDS,
    MAIL_FIELDS,
    MAIL_SYNC_FIELDS,
    email_item,
    event_item,
    field_paths,
    in_bounds,
)
from backend.connectors.exchange.series import OCCURRENCE_FIELDS, expand
from backend.connectors.exchange.transport import Transport, account_for, version_of
from backend.connectors.mailbox import (
    FOLDERS,
    ChangePage,
    Deletion,
    EmailItem,
    EventItem,
    Folder,
    MailboxIdentity,
    SyncWindow,
)
from backend.errors import AuthRevoked, ConnectorError, CursorExpired, SetupFailed, Unavailable
from backend.net import Resolver

log = logging.getLogger(__name__)

PROVIDER = "exchange"
SECRET_PASSWORD = "exchange_password"  # noqa: S105 - the secret's name, not a secret
MAX_CHANGES = 512  # SyncFolderItems' maximum per call
GET_ITEM_CHUNK = 64  # items per GetItem call: full bodies, so keep requests moderate


class _InvalidSyncState(Exception):
    """The server refused the sync state."""


class ExchangeMailbox:
    """The Mailbox protocol for one on-premises Exchange mailbox, over EWS."""

    provider: ClassVar[str] = PROVIDER

    def __init__(self, settings: Settings, address: str, login: str, password: str, ews_url: str,
                 auth_type: str, version: str | None, resolver: Resolver | None = None,
                 access_type: str = DELEGATE) -> None:
        self.settings = settings
        self.address = address.lower()
        self.login = login
        self._password = password
        self.ews_url = ews_url
        self.auth_type = auth_type or NTLM
        self.version = version
        # IMPERSONATION: ``login`` is the org's service account acting as ``address`` (mass activation).
        self.access_type = access_type
        self._transport = Transport(settings, resolver)
        self._protocol: Protocol | None = None
        self._account_obj: Account | None = None
        self._window: SyncWindow | None = None
        self._plan: HierarchyPlan | None = None

    def __repr__(self) -> str:
        return f"ExchangeMailbox({self.address!r}, {self.ews_url!r})"

    @property
    def calls(self) -> int:
        """HTTP requests made to the Exchange server so far."""
        return self._transport.calls

    def close(self) -> None:
        """Close the connections."""
        if self._protocol is not None:
            self._protocol.close()

    def _account(self) -> Account:
        if self._account_obj is None:
            self._protocol = self._transport.protocol(self.ews_url, self.login, self._password, self.auth_type,
                                                      version_of(self.version))
            self._account_obj = account_for(self._protocol, self.address, self.access_type)
        return self._account_obj

    def identity(self) -> MailboxIdentity:
        """The mailbox's primary address and aliases (ResolveNames; proves the credentials)."""
        try:
            self._account()
            assert self._protocol is not None
            return resolve_identity(self._protocol, self.address if self.access_type == IMPERSONATION
                                    else self.login)
        except SetupFailed as exc:
            if self._transport.timed_out():
                raise self._timeout_or(exc) from None
            raise Unavailable(exc.message) from None
        except Exception as exc:  # noqa: BLE001 - translated at the boundary
            raise self._timeout_or(exc) from None

    def _timeout_or(self, exc: BaseException) -> ConnectorError:
        """The domain error for ``exc``; a request cut at its deadline is "did not answer in time"."""
        if self._transport.timed_out():
            return Unavailable("The Exchange server did not answer in time.")
        return translate(exc)

    def read_changes(
        self, cursors: Mapping[str, str], window: SyncWindow, folders: tuple[Folder, ...] = tuple(Folder)
    ) -> Iterator[ChangePage]:
        """Pages of changes per folder since ``cursors`` (a missing or expired cursor reads ``window``)."""
        self._window = window
        wanted = [Folder(name) for name in folders or FOLDERS]
        decoded = {f: Cursor.decode(cursors.get(f.value, "")) for f in wanted}
        # One SyncFolderHierarchy call says which folders changed since the last run (hierarchy.py).
        plan: HierarchyPlan = self._call(lambda: plan_run(self._account(), wanted, decoded))
        self._plan = plan
        for folder in wanted:
            skipped = plan.unchanged.get(folder)
            if skipped is not None:
                # Nothing changed: the same sync state, now known good through the new hierarchy state.
                last = skipped
                yield ChangePage(folder=folder, last=True, cursor=skipped.encode())
            else:
                last = None
                for page in self._read_folder(folder, cursors.get(folder.value, ""), window):
                    last = Cursor.decode(page.cursor) if page.cursor else last
                    yield page
            if folder is Folder.CALENDAR and last is not None:
                rolled = self._call(self._roll, last, window)
                if rolled is not None:
                    yield rolled

    def _roll(self, cursor: Cursor, window: SyncWindow) -> ChangePage | None:
        """The meetings that came within the window since the horizon, as a page moving it (see horizon.py)."""
        end = window.events_to.astimezone(UTC)
        start = horizon.behind(cursor, window.events_from.astimezone(UTC), end)
        if start is None:
            return None
        events, unreadable = horizon.roll(self._account(), self._folder(Folder.CALENDAR), start, end, cursor,
                                          item_error)
        return ChangePage(folder=Folder.CALENDAR, events=events, last=True, unreadable=unreadable,
                          cursor=dataclasses.replace(cursor, horizon=end).encode())

    def _read_folder(self, folder: Folder, raw_cursor: str, window: SyncWindow) -> Iterator[ChangePage]:
        cursor = Cursor.decode(raw_cursor) if raw_cursor else None
        resynced = bool(raw_cursor) and cursor is None  # an unreadable cursor counts as expired
        folder_id = self._plan.folder_ids.get(folder, "") if self._plan is not None else ""
        if cursor is None:
            cursor = dataclasses.replace(Cursor.fresh(folder, window), folder_id=folder_id)
        while True:
            try:
                page, cursor = self._call(self._page, folder, cursor, resynced)
            except CursorExpired:
                if resynced or not cursor.state:
                    raise Unavailable("Exchange refused a fresh sync state.") from None
                log.info("exchange sync state expired folder=%s: resync from the window", folder.value)
                resynced = True
                cursor = dataclasses.replace(Cursor.fresh(folder, window), folder_id=folder_id)
                continue
            yield page
            if page.last:
                return

    def _call(self, fn: Any, *args: Any) -> Any:
        """Run one network step, translating vendor errors (yields stay outside, so the consumer's
        own exceptions are never mistaken for ours)."""
        try:
            return fn(*args)
        except _InvalidSyncState:
            raise CursorExpired() from None
        except ConnectorError as exc:
            if isinstance(exc, SetupFailed):
                raise self._timeout_or(exc) from None
            raise
        except Exception as exc:  # noqa: BLE001 - translated at the boundary
            raise self._timeout_or(exc) from None

    def fetch_item(self, kind: str, item_id: str) -> EmailItem | EventItem | None:
        """One email or meeting by the EWS id Outlook gives it (GetItem), or None when there is none."""
        return self._call(self._fetch, kind, item_id)

    def _fetch(self, kind: str, item_id: str) -> EmailItem | EventItem | None:
        account = self._account()
        calendar = kind == "event"
        model = CalendarItem if calendar else Message
        # An occurrence's original start is part of its key (UID@start): without it, one occurrence
        # would be named (and logged) as the whole series.
        fields = field_paths(model, OCCURRENCE_FIELDS if calendar else MAIL_FIELDS, account.version, with_body=True)
        for full in GetItem(account=account, chunk_size=1).call(
                items=[ItemId(id=item_id)], additional_fields=fields, shape=ID_ONLY):
            if isinstance(full, Exception):
                return None
            if calendar and isinstance(full, CalendarItem):
                # No window applies to an item asked for by name.
                return event_item(full, Cursor(datetime.min.replace(tzinfo=UTC), None, ""))
            if not calendar and isinstance(full, Message):
                item = email_item(full, Folder.INBOX)
                if item.sender is not None and item.sender.email == self.address:
                    item = dataclasses.replace(item, folder=Folder.SENT)
                return item
        return None

    def _folder(self, folder: Folder) -> DistinguishedFolderId:
        """The folder as SyncFolderItems names it: a distinguished id in this mailbox."""
        cls = {Folder.INBOX: Inbox, Folder.SENT: SentItems, Folder.CALENDAR: Calendar}[folder]
        # A distinguished folder id needs no GetFolder round trip. exchangelib takes the id itself
        # as the folder (the same request as a folder object built around it, without setting
        # that object's private _distinguished_id field).
        return DistinguishedFolderId(id=cls.DISTINGUISHED_FOLDER_ID, mailbox=EwsMailbox(email_address=self.address))

    def _page(self, folder: Folder, cursor: Cursor, resynced: bool) -> tuple[ChangePage, Cursor]:
        account = self._account()
        version = account.version
        calendar = folder is Folder.CALENDAR
        model = CalendarItem if calendar else Message
        svc = SyncFolderItems(account=account)
        try:
            changes = list(svc.call(
                folder=self._folder(folder), shape=ID_ONLY,
                additional_fields=field_paths(model, EVENT_SYNC_FIELDS if calendar else MAIL_SYNC_FIELDS, version),
                sync_state=cursor.state or None, ignore=None, max_changes_returned=MAX_CHANGES, sync_scope=None,
            ))
        except ews_errors.ErrorInvalidSyncStateData:
            raise _InvalidSyncState() from None
        new_state = svc.sync_state or cursor.state
        # exchangelib's own loop stops when the state does not move; so do we (no endless loop).
        last = bool(svc.includes_last_item_in_range) or new_state == cursor.state
        page = ChangePage(folder=folder, last=last, resynced=resynced)
        wanted: list[Any] = []
        for change, item in changes:
            if isinstance(item, Exception):
                page.unreadable += item_error(item)
                continue
            if change == SyncFolderItems.DELETE:
                page.deletions.append(Deletion(remote_id=item.id, folder=folder))
            elif change in (SyncFolderItems.CREATE, SyncFolderItems.UPDATE) and in_bounds(item, cursor, calendar):
                wanted.append(item)
        masters: list[Any] = []
        if wanted:
            fields = field_paths(model, EVENT_FIELDS if calendar else MAIL_FIELDS, version, with_body=True)
            for full in GetItem(account=account, chunk_size=GET_ITEM_CHUNK).call(
                    items=wanted, additional_fields=fields, shape=ID_ONLY):
                if isinstance(full, Exception):
                    page.unreadable += item_error(full)
                    continue
                if calendar and isinstance(full, CalendarItem) and full.type == "RecurringMaster":
                    masters.append(full)  # read as its occurrences, below
                elif calendar and isinstance(full, CalendarItem):
                    event = event_item(full, cursor)
                    if event is not None:
                        page.events.append(event)
                elif not calendar and isinstance(full, Message):
                    page.emails.append(email_item(full, folder))
        # A series that ended before the window is skipped; the others are read as their occurrences.
        live = [m for m in masters if event_item(m, cursor) is not None]
        if live and self._window is not None:
            page.events.extend(expand(account, self._folder(folder), live, self._window, cursor, self.address))
        caught_up = cursor.ceiling if not last else None
        plan = self._plan
        # Only a folder read to its last page is known good through this run's hierarchy state.
        next_cursor = dataclasses.replace(
            cursor, ceiling=caught_up, state=new_state,
            hierarchy=plan.state if last and plan is not None else "",
            checked=plan.checked_at if last and plan is not None else cursor.checked)
        page.cursor = next_cursor.encode()
        return page, next_cursor


# Per-item answers that mean "not now": the page is read again by the rerun (its sync state is not
# saved), as for the whole call failing. ErrorBatchProcessingStopped is what the items after a
# failed one of the same GetItem get.
_ITEM_NOT_NOW = (ews_errors.ErrorBatchProcessingStopped, ews_errors.ErrorServerBusy, ews_errors.ErrorTimeoutExpired,
                 ews_errors.ErrorInternalServerTransientError, ews_errors.ErrorMailboxMoveInProgress,
                 ews_errors.ErrorMailboxStoreUnavailable, ews_errors.ErrorConnectionFailed,
                 ews_errors.ErrorTooManyObjectsOpened, ews_errors.ErrorExceededConnectionCount)


def item_error(error: Exception) -> int:
    """What one item's error answer counts as unreadable: 0 for an item gone meanwhile (its Delete
    comes next time), 1 for one the server cannot give (corrupt, unconvertible: counted, never
    silently dropped); a "not now" raises Unavailable, so the page is read again."""
    if isinstance(error, ews_errors.ErrorItemNotFound):
        return 0
    if isinstance(error, _ITEM_NOT_NOW):
        raise Unavailable(f"Exchange could not give some items just now ({type(error).__name__}).")
    log.warning("exchange item unreadable error=%s", type(error).__name__)
    return 1


def open_mailbox(ctx: MailboxContext) -> ExchangeMailbox:
    """The Exchange connector for a stored connection (see ``ExchangeConnection.connection``)."""
    conn = ctx.connection
    impersonated = bool(conn.get("impersonation"))
    # A mass-activated mailbox is read with the org's service account (its password is the org's secret).
    password = (ctx.org_secret(SECRET_PASSWORD) if ctx.org_secret is not None else None) if impersonated \
        else ctx.secrets.get(SECRET_PASSWORD)
    if not password:
        raise AuthRevoked("No Exchange password is saved for this mailbox. Connect to Exchange again.")
    return ExchangeMailbox(
        ctx.settings,
        address=ctx.address,
        login=str(conn.get("login") or ctx.address),
        password=password,
        ews_url=str(conn.get("ews_url") or ""),
        auth_type=str(conn.get("auth_type") or NTLM),
        version=conn.get("version"),
        resolver=ctx.resolver,
        access_type=IMPERSONATION if impersonated else DELEGATE,
    )
