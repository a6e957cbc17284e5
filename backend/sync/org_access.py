"""When the org's own mailbox access breaks (app-only consent withdrawn, ...) and when it works again.

A mass-activated mailbox is read with the org's access, not the person's: when a run fails on it,
one more request with the org's access tells whether that access itself is refused
(``OrgProvider.refused``). If so the org connection is marked broken once (one incident, one email to
the admin address), every running mailbox on it is disabled with "Disabled due to an error
(organisation connection)" - never counted as anyone's own authentication failure - and all of them
resume from their cursors once the admin fixes the connection (:func:`resume_org`).

An admin who disconnects the org's access (:func:`disconnect_org`) turns sync off for everyone read
with it, as a mass deactivation does, before its facts and secrets are forgotten.
"""

from __future__ import annotations

import logging
import time

from backend.store import Store
from backend.store.mailboxes import InvalidTransition, SyncMailbox, SyncState
from backend.sync.org_providers import ORG_PROVIDERS, served_by_org_access

log = logging.getLogger(__name__)

ORG_ERROR = "org_connection"
ORG_MESSAGE = "Disabled due to an error (organisation connection)"


def _disable(store: Store, uid: str, reason: str) -> bool:
    """Disable one mailbox for the org connection's breakage; False when it was not running."""
    try:
        store.mailboxes.disable(uid, ORG_ERROR, ORG_MESSAGE)
    except InvalidTransition:
        return False  # paused or already disabled: it stays as it is
    store.mailboxes.update(uid, error={"code": ORG_ERROR, "message": ORG_MESSAGE, "since": time.time(),
                                       "source": "org", "detail": reason})
    store.schedule.remove(uid)
    return True


def break_org(store: Store, mailbox: SyncMailbox, reason: str) -> str | None:
    """Mark the org connection of ``mailbox``'s provider broken and disable its mailboxes; the new incident, or None."""
    provider = ORG_PROVIDERS[mailbox.provider]
    incident = store.org_access.mark_broken(mailbox.org_id, provider.name, ORG_ERROR, reason)
    if incident is None:
        # Already broken: the first failing run disabled everyone on it; only this one is left.
        _disable(store, mailbox.id, reason)
        return None
    scope = provider.scope(mailbox)
    disabled = 0
    for uid in store.users.org_user_ids(mailbox.org_id):
        other = store.mailboxes.get(uid)
        if other is None or other.provider != provider.name or not provider.uses(other) or \
                provider.scope(other) != scope:
            continue
        disabled += _disable(store, uid, reason)
    log.warning("org mailbox access broken org=%s provider=%s incident=%s disabled=%d", mailbox.org_id,
                provider.name, incident, disabled)
    return incident


def resume_org(store: Store, org_id: str, provider: str | None = None) -> int:
    """Run again every mailbox the org connection's breakage disabled (cursors kept); how many."""
    resumed = 0
    now = time.time()
    for uid in store.users.org_user_ids(org_id):
        mailbox = store.mailboxes.get(uid)
        if mailbox is None or mailbox.state is not SyncState.DISABLED_ERROR or \
                (mailbox.error or {}).get("code") != ORG_ERROR or \
                (provider is not None and mailbox.provider != provider):
            continue
        try:
            store.mailboxes.enable(uid)
        except InvalidTransition:
            continue
        store.schedule.set_next(uid, now)
        resumed += 1
    log.info("org mailbox access works again org=%s provider=%s resumed=%d", org_id, provider or "all", resumed)
    return resumed


def disconnect_org(store: Store, org_id: str, provider_name: str) -> tuple[bool, list[str]]:
    """Forget the org's ``provider_name`` access, then turn sync off for everyone read with it.

    Returns (whether a connection was set, the people whose sync was turned off). Nobody is left
    running on a connection whose secrets are gone: their next run would fail as a breakage and
    email the admin about a change they made themselves. The access goes first: a mass activation
    re-reads it after each slice, so a person it activates meanwhile is either seen by the scan
    below or turned off again by the activation itself.
    """
    provider = ORG_PROVIDERS[provider_name]
    access = store.org_access.get(org_id)
    tenant = access.microsoft_tenant if provider.name == "microsoft" else ""
    owned = bool(tenant) and store.org_access.tenant_owner(tenant) == org_id
    connected = store.org_access.disconnect(org_id, provider.name, provider.secrets)
    if owned:
        # The consent recorded for the tenant let any of its people's sign-ins run app-only: it
        # goes with the connection (the administrator removes the app in Entra ID as well).
        store.tenants.withdraw(tenant)
    stopped: list[str] = []
    for uid in store.users.org_user_ids(org_id):
        mailbox = store.mailboxes.get(uid)
        # Only who is read with this connection: a person's own app-only sync through their
        # tenant's consent (another tenant, or no org connection at all) is theirs.
        if mailbox is None or mailbox.org_id != org_id or not served_by_org_access(provider, access, mailbox) or \
                mailbox.state in (SyncState.NOT_ACTIVATED, SyncState.DEACTIVATED):
            continue
        try:
            store.mailboxes.deactivate(uid)
        except InvalidTransition:
            continue
        store.schedule.remove(uid)
        stopped.append(uid)
    log.info("org mailbox access disconnected org=%s provider=%s stopped=%d", org_id, provider.name, len(stopped))
    return connected, stopped
