"""The bare download: the client library alone pulling the benchmark's mail from the same fakes, no engine.

The fakes answer from processes of their own (``bench/fakes.py``), this process only downloads.
The baseline of P4 (backfill wall time ÷ bare download) and of the CPU ratio: what reading the same
items costs at the least, with the same client library, page sizes and fields as the connector,
but no mapping, filtering, Salesforce, Redis or cursors.

* Microsoft 365: ``requests`` paging ``/mailFolders/{inbox,sentitems}/messages/delta`` (the
  connector's first URL, ``Prefer`` page size and text bodies) through ``@odata.nextLink``.
* Exchange: exchangelib ``SyncFolderItems`` (ids and dates, 512 a call) then ``GetItem`` (64 a call,
  bodies) per folder, over the connector's transport (so with its 64 KiB parsing slices: a stricter
  baseline than stock exchangelib).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from exchangelib.items import ID_ONLY, Message
from exchangelib.services import GetItem, SyncFolderItems

from backend.config import Settings
from backend.connectors.exchange.cursor import Cursor
from backend.connectors.exchange.items import MAIL_FIELDS, MAIL_SYNC_FIELDS, field_paths, in_bounds
from backend.connectors.exchange.transport import Transport, account_for, version_of
from backend.connectors.graph.mail import messages_delta_path
from backend.connectors.mailbox import Folder, SyncWindow
from backend.net.outbound import make_session


def graph_download(target: dict[str, Any], window: SyncWindow) -> int:
    """Messages of Inbox and Sent Items read with requests; returns how many."""
    session = make_session(target["ca_path"], timeout=60)
    prefer = f'odata.maxpagesize={target["page_size"]}, outlook.body-content-type="text"'
    headers = {"Authorization": f"Bearer {target['token']}", "Prefer": prefer}
    count = 0
    try:
        for folder in (Folder.INBOX, Folder.SENT):
            url: str | None = f"{target['graph_url']}/v1.0{messages_delta_path('/me', folder, window)}"
            while url:
                page = session.get(url, headers=headers).json()
                count += len(page.get("value") or [])
                url = page.get("@odata.nextLink")
    finally:
        session.close()
    return count


def exchange_download(target: dict[str, Any], window: SyncWindow) -> int:
    """Messages of Inbox and Sent Items read with exchangelib (SyncFolderItems + GetItem); returns how many."""
    from exchangelib.folders import Inbox, SentItems
    from exchangelib.properties import DistinguishedFolderId
    from exchangelib.properties import Mailbox as EwsMailbox

    transport = Transport(Settings.load({"SIDEBAR_ENV": "development", **target["settings_overrides"]}))
    connection = target["connection"]
    protocol = transport.protocol(target["ews_url"], connection["login"], target["password"], "NTLM",
                                  version_of(connection["version"]))
    account = account_for(protocol, target["address"])
    sync_fields = field_paths(Message, MAIL_SYNC_FIELDS, account.version)
    fields = field_paths(Message, MAIL_FIELDS, account.version, with_body=True)
    bounds = Cursor.fresh(Folder.INBOX, window)  # the connector's window rule for mail
    count = 0
    try:
        for cls in (Inbox, SentItems):
            folder = DistinguishedFolderId(id=cls.DISTINGUISHED_FOLDER_ID,
                                           mailbox=EwsMailbox(email_address=target["address"]))
            state = None
            while True:
                svc = SyncFolderItems(account=account)
                changes = list(svc.call(folder=folder, shape=ID_ONLY, additional_fields=sync_fields,
                                        sync_state=state, ignore=None, max_changes_returned=512, sync_scope=None))
                wanted = [item for _, item in changes
                          if not isinstance(item, Exception) and in_bounds(item, bounds, False)]
                if wanted:
                    for full in GetItem(account=account, chunk_size=64).call(
                            items=wanted, additional_fields=fields, shape=ID_ONLY):
                        count += isinstance(full, Message)
                if svc.includes_last_item_in_range or svc.sync_state == state:
                    break
                state = svc.sync_state
    finally:
        protocol.close()
    return count


DOWNLOADS: dict[str, Callable[[dict[str, Any], SyncWindow], int]] = {
    "microsoft": graph_download, "exchange": exchange_download}


def bare_download(target: dict[str, Any], backfill_days: int) -> dict[str, Any] | None:
    """Time the bare download of ``target`` (``BenchMailbox.bare_target``; None when its provider has none).

    Items, wall seconds, and CPU ms per item: this process's CPU (every thread), as for the run;
    the fakes answer from their own process.
    """
    download = DOWNLOADS.get(target["provider"])
    if download is None:
        return None
    window = SyncWindow.starting(datetime.now(tz=UTC), backfill_days)
    cpu0, wall0 = time.process_time(), time.monotonic()
    items = download(target, window)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    return {"items": items, "seconds": round(wall, 2), "cpu_ms_per_item": round(1000 * cpu / max(1, items), 3)}
