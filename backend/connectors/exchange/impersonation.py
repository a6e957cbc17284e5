"""On-premises Exchange read with the org's service account (ApplicationImpersonation), for mass activation.

The administrator gives one service account (login, password, EWS URL or Autodiscover) holding the
ApplicationImpersonation role (optionally scoped). :func:`check_service_account` is the console's
**Test**: it proves the login exactly as the personal "Connect to Exchange" does
(:func:`backend.connectors.exchange.connect.connect`: outbound guard, Autodiscover, auth probe), then
opens one mailbox's Inbox as that person (``ExchangeImpersonation`` header). :class:`ImpersonationDirectory`
finds people's mailboxes with ResolveNames through the service account and probes each one the same
way: ``ErrorImpersonateUserDenied`` means the role's scope leaves that mailbox out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exchangelib import IMPERSONATION
from exchangelib import errors as ews_errors
from exchangelib.folders import Inbox, Root
from exchangelib.protocol import Protocol

from backend.config import Settings
from backend.connectors.exchange.connect import ExchangeConnection, connect
from backend.connectors.exchange.directory import directory_candidates
from backend.connectors.exchange.errors import setup_error
from backend.connectors.exchange.transport import Transport, account_for, version_of
from backend.connectors.graph.directory import FoundMailbox
from backend.errors import SetupFailed
from backend.net import Resolver

# The org secret holding the service account's password (same name as a person's own Exchange password).
SECRET_PASSWORD = "exchange_password"  # noqa: S105 - the secret's name, not a secret


@dataclass(frozen=True)
class ServiceAccount:
    """How to reach Exchange as the org's service account (the password only in memory)."""

    login: str
    password: str
    ews_url: str
    auth_type: str
    version: str = ""


def check_service_account(settings: Settings, login: str, password: str, ews_url: str | None, address: str,
                          resolver: Resolver | None = None) -> ExchangeConnection:
    """The console's Test: the login works (as Connect to Exchange checks it) and may impersonate ``address``."""
    found = connect(settings, login, password, ews_url, email_hint=address, resolver=resolver)
    account = ServiceAccount(login, password, found.ews_url, found.auth_type, found.version)
    directory = ImpersonationDirectory(settings, account, resolver)
    try:
        answer = directory.find([address])[address.strip().lower()]
    except Exception as exc:  # noqa: BLE001 - every failure must become a specific answer, never a 500
        raise setup_error(exc, directory.transport.timed_out()) from None
    finally:
        directory.close()
    if answer.status == "forbidden":
        raise SetupFailed("impersonation_denied", f"The service account may not impersonate {address}: give it the "
                                                  "ApplicationImpersonation role (New-ManagementRoleAssignment), "
                                                  "or widen its management scope.")
    if answer.status != "found":
        raise SetupFailed("mailbox_not_found", f"Exchange has no mailbox for {address}.")
    return found


class ImpersonationDirectory:
    """Mailboxes of the org as the service account sees them (ResolveNames + one impersonated GetFolder each)."""

    def __init__(self, settings: Settings, account: ServiceAccount, resolver: Resolver | None = None) -> None:
        self.account = account
        self.transport = Transport(settings, resolver)
        self._protocol: Protocol | None = None

    @property
    def protocol(self) -> Protocol:
        """The service account's EWS protocol (opened on first use)."""
        if self._protocol is None:
            a = self.account
            self._protocol = self.transport.protocol(a.ews_url, a.login, a.password, a.auth_type,
                                                     version_of(a.version))
        return self._protocol

    def find(self, addresses: Iterable[str]) -> dict[str, FoundMailbox]:
        """Each address's mailbox; a refused service account raises (every lookup would fail alike)."""
        wanted = list(dict.fromkeys(a.strip().lower() for a in addresses if a.strip()))
        return {address: self._one(address) for address in wanted}

    def _one(self, address: str) -> FoundMailbox:
        candidates = directory_candidates(self.protocol, address)
        if not candidates:
            return FoundMailbox(address, "missing")
        exact = [c for c in candidates if c.matches(address)]
        if len(exact) != 1:
            # ResolveNames matched a name loosely: someone, but not the mailbox receiving this address.
            return FoundMailbox(address, "mismatch", identity=candidates[0])
        identity = exact[0]
        try:
            self.probe(identity.primary)
        except ews_errors.ErrorImpersonateUserDenied:
            return FoundMailbox(address, "forbidden", identity=identity)
        except ews_errors.ErrorNonExistentMailbox:
            return FoundMailbox(address, "missing")
        return FoundMailbox(address, "found", object_id=identity.primary, identity=identity)

    def probe(self, address: str) -> None:
        """Open ``address``'s Inbox as that person (raises the server's refusal)."""
        account = account_for(self.protocol, address, IMPERSONATION)
        Inbox.get_distinguished(Root(account=account))  # a Root built here makes no request

    def refused(self) -> str | None:
        """Why Exchange refuses the service account now (one ResolveNames request), or None."""
        try:
            self.protocol.resolve_names([self.account.login], search_scope="ActiveDirectory")
        except ews_errors.UnauthorizedError:
            return "Exchange no longer accepts the service account's login and password."
        return None

    def close(self) -> None:
        """Release connections."""
        if self._protocol is not None:
            self._protocol.close()
