"""When the org's own mailbox access breaks (app-only consent withdrawn) and when it works again.

A mass-activated mailbox is read with the org's access, not the person's: when a run fails on it,
one more client-credentials request tells whether the org's access itself is refused. If so the org
connection is marked broken once (one incident, one email to the admin address), every running
mailbox on it is disabled with "Disabled due to an error (organisation connection)" - never counted
as anyone's own authentication failure - and all of them resume from their cursors once the admin
fixes the connection (:func:`resume_org`).
"""

from __future__ import annotations

import logging
import time

from backend.connectors.graph import MicrosoftAuth, check_app_only
from backend.errors import AuthRevoked, ServiceMisconfigured
from backend.store import Store
from backend.store.mailboxes import InvalidTransition, SyncMailbox, SyncState

log = logging.getLogger(__name__)

ORG_ERROR = "org_connection"
ORG_MESSAGE = "Disabled due to an error (organisation connection)"


def uses_org_access(mailbox: SyncMailbox) -> bool:
    """True when the mailbox is read with its org's Microsoft 365 app-only access."""
    return mailbox.provider == "microsoft" and bool(mailbox.connection.get("app_only"))


def org_access_refused(auth: MicrosoftAuth, tenant: str) -> str | None:
    """Why the tenant refuses our application token now, or None when it grants one."""
    try:
        check_app_only(auth, tenant)
    except (AuthRevoked, ServiceMisconfigured) as exc:
        return exc.message
    return None


def break_org(store: Store, mailbox: SyncMailbox, reason: str) -> str | None:
    """Mark the org's Microsoft connection broken and disable its mailboxes; the new incident, or None."""
    incident = store.org_access.mark_broken(mailbox.org_id, "microsoft", ORG_ERROR, reason)
    tenant = str(mailbox.connection.get("tenant_id", ""))
    disabled = 0
    for uid in store.users.org_user_ids(mailbox.org_id):
        other = store.mailboxes.get(uid)
        if other is None or not uses_org_access(other) or str(other.connection.get("tenant_id", "")) != tenant:
            continue
        try:
            store.mailboxes.disable(uid, ORG_ERROR, ORG_MESSAGE)
        except InvalidTransition:
            continue  # paused or already disabled: it stays as it is
        store.mailboxes.update(uid, error={"code": ORG_ERROR, "message": ORG_MESSAGE, "since": time.time(),
                                           "source": "org", "detail": reason})
        store.schedule.remove(uid)
        disabled += 1
    log.warning("org mailbox access broken org=%s tenant=%s incident=%s disabled=%d", mailbox.org_id, tenant,
                incident, disabled)
    return incident


def resume_org(store: Store, org_id: str) -> int:
    """Run again every mailbox the org connection's breakage disabled (cursors kept); how many."""
    resumed = 0
    now = time.time()
    for uid in store.users.org_user_ids(org_id):
        mailbox = store.mailboxes.get(uid)
        if mailbox is None or mailbox.state is not SyncState.DISABLED_ERROR or \
                (mailbox.error or {}).get("code") != ORG_ERROR:
            continue
        try:
            store.mailboxes.enable(uid)
        except InvalidTransition:
            continue
        store.schedule.set_next(uid, now)
        resumed += 1
    log.info("org mailbox access works again org=%s resumed=%d", org_id, resumed)
    return resumed
