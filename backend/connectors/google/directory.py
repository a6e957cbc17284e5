"""Mailboxes of a Google Workspace as mass activation finds them: the domain, a delegated token, the profile.

Per address: outside the Workspace's domain(s) the org's access does not reach it; otherwise a
token as that person (domain-wide delegation) and Gmail's profile and send-as list say which
mailbox Google signs in for that address (three requests a person). "Invalid email or User ID" is no
mailbox; Gmail turned off for the person's organisational unit is outside what the org lets us read.
The key refused or the delegation withdrawn raises: every lookup would fail alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import requests

from backend.config import Settings
from backend.connectors.google.delegation import (
    NO_USER,
    NOT_AUTHORISED,
    DelegatedTokens,
    DelegationRefused,
    ServiceAccountKey,
)
from backend.connectors.google.http import GmailDisabled
from backend.connectors.google.reader import GmailMailbox
from backend.connectors.graph.directory import FoundMailbox
from backend.connectors.mailbox import MailboxIdentity
from backend.errors import SetupFailed
from backend.net.outbound import make_session
from backend.security.crypto import fingerprint


def in_domains(address: str, domains: Iterable[str]) -> bool:
    """Whether an address is inside one of the Workspace's domains (exact domain, case-insensitive)."""
    return address.strip().rpartition("@")[2].lower() in {d.strip().lower() for d in domains if d.strip()}


class WorkspaceDirectory:
    """Delegated lookups of mailboxes in one Google Workspace."""

    def __init__(self, settings: Settings, key: ServiceAccountKey, domains: Iterable[str],
                 session: requests.Session | None = None) -> None:
        self.settings = settings
        self.key = key
        self.domains = tuple(domains)
        self._own = session is None
        self.session = session or make_session(settings.OUTBOUND_CA_BUNDLE, settings.OUTBOUND_TIMEOUT_SECONDS)

    def find(self, addresses: Iterable[str]) -> dict[str, FoundMailbox]:
        """Each address's mailbox (the org's key or delegation refused raises DelegationRefused)."""
        wanted = list(dict.fromkeys(a.strip().lower() for a in addresses if a.strip()))
        return {address: self._one(address) for address in wanted}

    def identity(self, address: str) -> MailboxIdentity:
        """The mailbox Google signs in as ``address`` (profile + send-as through a delegated token)."""
        tokens = DelegatedTokens(self.settings, self.key, address, self.session)
        mailbox = GmailMailbox(self.settings, tokens, f"dwd:{fingerprint(address)}", self.session)
        return mailbox.identity()

    def _one(self, address: str) -> FoundMailbox:
        if not in_domains(address, self.domains):
            return FoundMailbox(address, "forbidden")
        try:
            identity = self.identity(address)
        except DelegationRefused as exc:
            if exc.org_wide:
                raise
            return FoundMailbox(address, "missing")
        except GmailDisabled:
            return FoundMailbox(address, "forbidden")
        status = "found" if identity.matches(address) else "mismatch"
        return FoundMailbox(address, status, object_id=identity.primary, identity=identity)

    def close(self) -> None:
        """Release connections (only a session this directory opened)."""
        if self._own:
            self.session.close()


def check_delegation(settings: Settings, key: ServiceAccountKey, domains: Iterable[str], address: str,
                     session: requests.Session | None = None) -> MailboxIdentity:
    """The console's proof: a delegated token as ``address`` reads its Gmail profile (SetupFailed says why not)."""
    directory = WorkspaceDirectory(settings, key, domains, session)
    try:
        if not in_domains(address, directory.domains):
            raise SetupFailed("address_outside_domain", f"{address} is not in the Workspace domain "
                                                        f"({', '.join(directory.domains)}).")
        try:
            identity = directory.identity(address)
        except DelegationRefused as exc:
            code = exc.reason if exc.reason in (NO_USER, NOT_AUTHORISED) else "key_refused"
            raise SetupFailed(code, exc.message + ("." if not exc.message.endswith(".") else "")) from None
        except GmailDisabled:
            raise SetupFailed("gmail_disabled", f"Gmail is turned off for {address} in the Admin console "
                                                "(Apps > Google Workspace > Gmail).") from None
    finally:
        directory.close()
    if not identity.matches(address):
        raise SetupFailed("mailbox_mismatch", f"Google signs {address} in as {identity.primary}: test with a "
                                              "primary address.")
    return identity
