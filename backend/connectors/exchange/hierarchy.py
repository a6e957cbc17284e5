"""Which folders changed since the last run: one SyncFolderHierarchy call instead of a SyncFolderItems per folder.

A run with nothing new used to make one SyncFolderItems call per folder (Inbox, Sent Items,
Calendar) plus NTLM's two handshake legs: 5 requests. Exchange reports a folder as updated in
SyncFolderHierarchy when its contents change (its commit time moves), so one hierarchy call from the
state of the last run says which folders need reading at all: a quiet run is that call and the
handshake, 3 requests.

The hierarchy state is kept in each folder's cursor, set only when the folder was read to its last
page, so a folder is skipped only when it was read through the very state the call starts from. As a
guard against a server that does not report a content change in the hierarchy, a folder is read
anyway when its last real read is older than :data:`FULL_CHECK_SECONDS`. The folders' EWS ids (what
the hierarchy names) come from one GetFolder call on the first run, then from the cursors.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from exchangelib import Account
from exchangelib import errors as ews_errors
from exchangelib.folders import Calendar, Inbox, Root, SentItems
from exchangelib.items import ID_ONLY
from exchangelib.services import GetFolder, SyncFolderHierarchy

from backend.connectors.exchange.cursor import Cursor
from backend.connectors.mailbox import Folder

# A folder the hierarchy calls unchanged is still read when its last real read is older than this.
FULL_CHECK_SECONDS = 6 * 3600
_CLASSES = {Folder.INBOX: Inbox, Folder.SENT: SentItems, Folder.CALENDAR: Calendar}


@dataclass
class HierarchyPlan:
    """What a run reads: the folders' ids, the hierarchy state to record, the folders to skip (new cursors)."""

    folder_ids: dict[Folder, str]
    state: str
    unchanged: dict[Folder, Cursor] = field(default_factory=dict)
    checked_at: int = 0


def folder_ids(account: Account, folders: Iterable[Folder]) -> dict[Folder, str]:
    """The EWS ids of distinguished folders (one GetFolder call for all of them)."""
    wanted = list(folders)
    root = Root(account=account)
    found = GetFolder(account=account).call(folders=[_CLASSES[f](root=root) for f in wanted],
                                            additional_fields=[], shape=ID_ONLY)
    ids: dict[Folder, str] = {}
    for folder, answer in zip(wanted, found, strict=False):
        if not isinstance(answer, Exception) and answer.id:
            ids[folder] = str(answer.id)
    return ids


def changed_since(account: Account, state: str) -> tuple[set[str] | None, str]:
    """(ids of folders changed since ``state``, or None for "read them all"; the state now)."""
    svc = SyncFolderHierarchy(account=account)
    try:
        changes = list(svc.call(folder=Root(account=account), shape=ID_ONLY, additional_fields=None,
                                sync_state=state or None))
    except ews_errors.ErrorInvalidSyncStateData:
        if not state:
            raise
        # The last run's state expired: read every folder, from a fresh state.
        return None, changed_since(account, "")[1]
    new_state = str(svc.sync_state or "")
    if not state or not svc.includes_last_item_in_range:
        return None, new_state
    return {str(f.id) for _, f in changes if not isinstance(f, Exception) and getattr(f, "id", None)}, new_state


def plan_run(account: Account, folders: Iterable[Folder], cursors: dict[Folder, Cursor | None]) -> HierarchyPlan:
    """The folders this run must read, and the cursors of those it may skip."""
    wanted = list(folders)
    ids = {f: c.folder_id for f, c in cursors.items() if c is not None and c.folder_id}
    missing = [f for f in wanted if f not in ids]
    if missing:
        ids.update(folder_ids(account, missing))
    states = {c.hierarchy if c is not None else "" for c in (cursors.get(f) for f in wanted)}
    shared = states.pop() if len(states) == 1 else ""
    changed, state = changed_since(account, shared)
    now = int(time.time())
    plan = HierarchyPlan(ids, state, checked_at=now)
    if changed is None:
        return plan
    for folder in wanted:
        cursor = cursors.get(folder)
        if (cursor is not None and cursor.state and cursor.ceiling is None and folder in ids
                and ids[folder] not in changed and now - cursor.checked < FULL_CHECK_SECONDS):
            plan.unchanged[folder] = dataclasses.replace(cursor, hierarchy=state, folder_id=ids[folder])
    return plan
