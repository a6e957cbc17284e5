"""Turning sync on for a mailbox, shared by every provider (Exchange, Microsoft 365, Gmail).

Each provider's connect flow proves the credentials, reads the mailbox identity, then calls
:func:`check_mailbox_match` and :func:`activate`, so the order "check, then store, then run" is the
same everywhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from backend.connectors.errors import SetupFailed
from backend.connectors.mailbox import MailboxIdentity
from backend.extensions import services
from backend.store.mailboxes import SyncMailbox
from backend.store.users import User

log = logging.getLogger(__name__)


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
    user: User,
    provider: str,
    identity: MailboxIdentity,
    connection: Mapping[str, Any],
    secrets: Mapping[str, str],
) -> SyncMailbox:
    """Store the credentials encrypted, mark sync running, schedule and enqueue the first run."""
    from backend.jobs.sync import enqueue_sync

    store = services().store
    mailbox = store.mailboxes.ensure(user.id, user.org_id)
    if mailbox.provider and mailbox.provider != provider:
        # Switching provider: the old provider's credentials must not linger.
        store.secrets.delete("mailbox", mailbox.id)
    for name, value in secrets.items():
        store.secrets.put("mailbox", mailbox.id, name, value)
    mailbox = store.mailboxes.activate(
        mailbox.id, provider, identity.primary, identity.aliases, dict(connection)
    )
    store.schedule.set_next(mailbox.id, time.time())
    enqueue_sync(mailbox.id, interactive=True)
    log.info("sync activated mid=%s provider=%s", mailbox.id, provider)
    return mailbox
