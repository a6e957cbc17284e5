"""Connectors to outside systems, each behind a small interface, built from settings by a factory.

Mailbox providers are an explicit map (no plugin discovery). Provider modules are imported when
first used, so a web process that never opens a mailbox never loads exchangelib.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from backend.config import Settings
from backend.connectors.mailbox import Mailbox
from backend.net import Resolver

log = logging.getLogger(__name__)


class SecretGuard(Protocol):
    """Writes a mailbox secret only while the mailbox is still connected (atomically with its state)."""

    def put_secret_if_connected(self, mid: str, name: str, value: str, generation: float | None = None) -> bool:
        """Store the secret unless the mailbox was deactivated (or reconnected) meanwhile; True when stored."""
        ...


class MailboxSecrets:
    """The secrets of one sync mailbox (encrypted at rest), and nothing else.

    Built for a run with a ``guard`` (the mailbox repository), a write-back (a refreshed token cache)
    is refused once the person pressed Deactivate, or reconnected, while the run was going: a run
    must never bring back credentials that were deleted. Activation stores secrets through the
    store itself, not through this class.
    """

    KIND = "mailbox"

    def __init__(self, store: Any, mailbox_id: str, guard: SecretGuard | None = None,
                 generation: float | None = None) -> None:
        self._store = store
        self._mid = mailbox_id
        self._guard = guard
        # The mailbox's activation time when the run began: a reconnect in between changes it.
        self._generation = generation

    def get(self, name: str) -> str | None:
        """A decrypted secret of this mailbox, or None."""
        value: str | None = self._store.get(self.KIND, self._mid, name)
        return value

    def put(self, name: str, value: str) -> bool:
        """Store (replace) a secret of this mailbox, encrypted; False when the mailbox is no longer connected."""
        if self._guard is None:
            self._store.put(self.KIND, self._mid, name, value)
            return True
        stored = self._guard.put_secret_if_connected(self._mid, name, value, self._generation)
        if not stored:
            log.info("secret write-back refused: mailbox no longer connected mid=%s name=%s", self._mid, name)
        return stored


@dataclass
class MailboxContext:
    """What a connector is built from: settings, the mailbox's non-secret details, its secrets."""

    settings: Settings
    mailbox_id: str
    address: str
    connection: dict[str, Any]
    secrets: MailboxSecrets
    # Injected clients; None: the connector builds its own. The resolver is the host guard's DNS
    # (split DNS, or a test's fake); the HTTP session is shared by a connector's requests.
    resolver: Resolver | None = None
    http_session: requests.Session | None = None
    # The org's connection secrets (by name), for a mailbox read with its org's access (mass activation).
    org_secret: Callable[[str], str | None] | None = None


def _exchange(ctx: MailboxContext) -> Mailbox:
    from backend.connectors.exchange import open_mailbox

    return open_mailbox(ctx)


def _microsoft(ctx: MailboxContext) -> Mailbox:
    from backend.connectors.graph import open_mailbox

    return open_mailbox(ctx)


def _google(ctx: MailboxContext) -> Mailbox:
    from backend.connectors.google import open_mailbox

    return open_mailbox(ctx)


PROVIDERS: dict[str, Callable[[MailboxContext], Mailbox]] = {
    "exchange": _exchange,
    "microsoft": _microsoft,
    "google": _google,
}


def open_mailbox(provider: str, ctx: MailboxContext) -> Mailbox:
    """The connector for ``provider`` (KeyError for an unknown provider)."""
    return PROVIDERS[provider](ctx)
