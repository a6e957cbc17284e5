"""Turning sync on for a mailbox, shared by every provider (Exchange, Microsoft 365, Gmail).

Each provider's connect flow proves the credentials, reads the mailbox identity, then calls
:func:`check_mailbox_match` and :func:`activate`, so the order "check, then store, then run" is the
same everywhere. The caller (a view) then enqueues the first run: this layer never reaches up into
the jobs.

An administrator's Disable holds a mailbox off (``SyncMailbox.admin_hold``): every way the person
has back to running (Exchange connect, Microsoft 365 consent or on-behalf-of, Google consent, Resume)
comes through :func:`refuse_if_held`, :func:`activate` or :func:`resume` here and is refused with
``locked_by_admin`` (the store's transition checks the hold atomically, so a Disable pressed during a
connect still wins). An administrator's Pause is an ordinary pause: the person may resume it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from backend.connectors.mailbox import MailboxIdentity
from backend.errors import SetupFailed
from backend.security.exchange_identity import IssuerHosts, server_speaks_for
from backend.store import Store
from backend.store.mailboxes import LockedByAdmin, SyncMailbox
from backend.store.users import User

log = logging.getLogger(__name__)

LOCKED_CODE = "locked_by_admin"
LOCKED_MESSAGE = "Your administrator turned sync off for this mailbox. Ask them to turn it back on."


def held_off() -> SetupFailed:
    """The refusal of the person's reconnect or Resume while an administrator holds the mailbox off."""
    failed = SetupFailed(LOCKED_CODE, LOCKED_MESSAGE)
    failed.credentials_sent = False
    return failed


def refuse_if_held(store: Store, uid: str) -> None:
    """Refuse before a connect flow starts (no password sent, no consent asked) when the mailbox is held off."""
    mailbox = store.mailboxes.get(uid)
    if mailbox is not None and mailbox.admin_hold:
        raise held_off()


def resume(store: Store, mid: str) -> SyncMailbox:
    """The person's Resume (InvalidTransition when not paused; ``locked_by_admin`` when held off)."""
    try:
        return store.mailboxes.resume(mid)
    except LockedByAdmin:
        raise held_off() from None


def check_mailbox_match(addin_mailbox: str, identity: MailboxIdentity) -> None:
    """Refuse a mailbox that is not the add-in's (primary or alias, case-insensitive)."""
    if not addin_mailbox:
        raise SetupFailed("mailbox_unknown", "Open the add-in in the mailbox you want to sync, then try again.")
    if not identity.matches(addin_mailbox):
        raise SetupFailed(
            "mailbox_mismatch",
            f"You signed in as {identity.primary}, but the add-in runs in {addin_mailbox}. "
            f"Connect {addin_mailbox} instead.",
        )


def activate(
    store: Store,
    user: User,
    provider: str,
    identity: MailboxIdentity,
    connection: Mapping[str, Any],
    secrets: Mapping[str, str],
) -> SyncMailbox:
    """Store the credentials encrypted, mark sync running and schedule it now (the caller enqueues the run)."""
    mailbox = store.mailboxes.ensure(user.id, user.org_id)
    if mailbox.admin_hold:
        raise held_off()  # before any credential is stored
    if mailbox.provider and mailbox.provider != provider:
        # Switching provider: the old provider's credentials must not linger.
        store.secrets.delete("mailbox", mailbox.id)
    for name, value in secrets.items():
        store.secrets.put("mailbox", mailbox.id, name, value)
    try:
        mailbox = store.mailboxes.activate(
            mailbox.id, provider, identity.primary, identity.aliases, dict(connection)
        )
    except LockedByAdmin:  # an administrator's Disable landed meanwhile: it wins
        raise held_off() from None
    store.schedule.set_next(mailbox.id, time.time())
    log.info("sync activated mid=%s provider=%s", mailbox.id, provider)
    return mailbox


def confirm_exchange_identity(store: Store, issuers: IssuerHosts, user: User, addresses: list[str],
                              ews_url: str) -> bool:
    """After a password-proven Exchange connection: tie the user's identity token to the mailbox.

    Returns True when the add-in mailbox is now verified. Only a server that speaks for the token's
    issuer (:func:`server_speaks_for`) may bind it: the caller chose ``ews_url``, and a server of
    their own would otherwise vouch for any address with someone else's genuine token. Otherwise the
    connection stands but the mailbox stays unverified.
    """
    if not user.addin_identity.startswith("exchange:") or user.addin_mailbox.lower() not in \
            {a.lower() for a in addresses}:
        return False
    if not server_speaks_for(issuers, user.addin_identity, ews_url, user.addin_mailbox):
        log.warning("exchange identity not bound uid=%s: the EWS server is not the token's issuer", user.id)
        return False
    store.exchange_ids.bind(user.addin_identity, addresses)
    if not user.addin_mailbox_verified:
        store.users.update(user.id, addin_mailbox_verified=True)
    return True
