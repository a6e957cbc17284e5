"""Connectors to outside systems, each behind a small interface, built from settings by a factory.

Mailbox providers are an explicit map (no plugin discovery). Provider modules are imported when
first used, so a web process that never opens a mailbox never loads exchangelib.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.config import Settings
from backend.connectors.mailbox import Mailbox


class MailboxSecrets:
    """The secrets of one sync mailbox (encrypted at rest), and nothing else."""

    KIND = "mailbox"

    def __init__(self, store: Any, mailbox_id: str) -> None:
        self._store = store
        self._mid = mailbox_id

    def get(self, name: str) -> str | None:
        """A decrypted secret of this mailbox, or None."""
        value: str | None = self._store.get(self.KIND, self._mid, name)
        return value

    def put(self, name: str, value: str) -> None:
        """Store (replace) a secret of this mailbox, encrypted."""
        self._store.put(self.KIND, self._mid, name, value)


@dataclass
class MailboxContext:
    """What a connector is built from: settings, the mailbox's non-secret details, its secrets."""

    settings: Settings
    mailbox_id: str
    address: str
    connection: dict[str, Any]
    secrets: MailboxSecrets
    # Optional injected clients (an http session, a clock); connectors build defaults.
    clients: dict[str, Any] = field(default_factory=dict)


def _exchange(ctx: MailboxContext) -> Mailbox:
    from backend.connectors.exchange import open_mailbox

    return open_mailbox(ctx)


def _microsoft(ctx: MailboxContext) -> Mailbox:
    from backend.connectors.graph import open_mailbox

    return open_mailbox(ctx)


PROVIDERS: dict[str, Callable[[MailboxContext], Mailbox]] = {
    "exchange": _exchange,
    "microsoft": _microsoft,
}


def open_mailbox(provider: str, ctx: MailboxContext) -> Mailbox:
    """The connector for ``provider`` (KeyError for an unknown provider)."""
    return PROVIDERS[provider](ctx)
