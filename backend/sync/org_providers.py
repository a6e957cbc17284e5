"""The providers an org's own mailbox access can read, for mass activation: one explicit map.

Each :class:`OrgProvider` says, for one provider, whether the org's access is set up, how to look up
people's mailboxes with it (a directory with ``find(addresses)`` and ``close()``), what the connection
of a mailbox activated through it holds, whether a sync mailbox is read with it, and why the org's
access is refused right now (None when it works). :mod:`backend.sync.mass`, :mod:`backend.sync.org_access`,
the activation job and the console's API go through :data:`ORG_PROVIDERS` only; a provider is added by
adding an entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.clients import Clients
from backend.config import Settings
from backend.connectors.exchange.impersonation import SECRET_PASSWORD
from backend.connectors.google.delegation import SECRET_KEY
from backend.connectors.graph import check_app_only
from backend.connectors.graph.directory import FoundMailbox, TenantDirectory
from backend.errors import AuthRevoked, ServiceMisconfigured
from backend.store import Store
from backend.store.mailbox_record import SyncMailbox
from backend.store.org_access import OrgAccess
from backend.sync.org_exchange import service_directory, service_refused
from backend.sync.org_google import delegation_refused_now, workspace_directory


class OrgDirectory(Protocol):
    """Looks up people's mailboxes with the org's access."""

    def find(self, addresses: Iterable[str]) -> dict[str, FoundMailbox]:
        """What the provider says of each address (keyed by the lower-cased address)."""

    def close(self) -> None:
        """Release the directory's connections."""


@dataclass(frozen=True)
class OrgProvider:
    """One provider's org access, as mass activation and the broken-org path use it."""

    name: str
    label: str
    # The org's access is set up (else the API answers ``org_access_missing`` with ``missing``).
    ready: Callable[[OrgAccess], bool]
    missing: str
    directory: Callable[[Settings, Clients, Store, OrgAccess], OrgDirectory]
    # The connection fields (besides ``via`` and ``activated_by``) of a mailbox activated through it.
    connection: Callable[[OrgAccess, FoundMailbox], dict[str, Any]]
    # The sync mailbox is read with this org access (not a person's own connection).
    uses: Callable[[SyncMailbox], bool]
    # Mailboxes read with the same access as this one (a break disables those only).
    scope: Callable[[SyncMailbox], str]
    # The scope the org's connected access serves (None: every mailbox read with this provider's
    # org access): a refusal tells about the org's access only for a mailbox in that scope.
    access_scope: Callable[[OrgAccess], str] | None
    # Why the org's access is refused now; None when it works.
    refused: Callable[[Settings, Clients, Store, OrgAccess], str | None]
    # Per-person result messages that differ from :data:`backend.sync.mass.MESSAGES`.
    messages: dict[str, str] = field(default_factory=dict)
    # The names of the org secrets the connection keeps (forgotten when the admin disconnects it).
    secrets: tuple[str, ...] = ()
    # Connection fields a run takes from the org's access as it is now, over the stored connection's:
    # they must match the org secret (a saved new service account applies to everyone at once).
    current: Callable[[OrgAccess], dict[str, Any]] | None = None


def _microsoft_directory(settings: Settings, clients: Clients, store: Store, access: OrgAccess) -> OrgDirectory:
    return TenantDirectory(settings, clients.microsoft_auth, access.microsoft_tenant)


def _microsoft_refused(settings: Settings, clients: Clients, store: Store, access: OrgAccess) -> str | None:
    """Why the tenant refuses our application token now (one client-credentials request), or None."""
    try:
        check_app_only(clients.microsoft_auth, access.microsoft_tenant)
    except (AuthRevoked, ServiceMisconfigured) as exc:
        return exc.message
    return None


MICROSOFT = OrgProvider(
    name="microsoft",
    label="Microsoft 365",
    ready=lambda access: bool(access.microsoft_tenant),
    missing="Connect Microsoft 365 first (Mailbox access: a tenant administrator grants admin consent).",
    directory=_microsoft_directory,
    connection=lambda access, found: {"app_only": True, "tenant_id": access.microsoft_tenant,
                                      "user_id": found.object_id},
    uses=lambda mailbox: mailbox.provider == "microsoft" and bool(mailbox.connection.get("app_only")),
    scope=lambda mailbox: str(mailbox.connection.get("tenant_id", "")),
    # A person's own app-only sync (their tenant's consent, no org connection) is not the org's access.
    access_scope=lambda access: access.microsoft_tenant,
    refused=_microsoft_refused,
    messages={
        "no_mailbox": "Microsoft 365 has no mailbox for this address.",
        "mailbox_mismatch": "This address is not the primary address of the Microsoft 365 mailbox found for it "
                            "(an alias or a former address): activate the mailbox's primary address.",
        "not_allowed_by_tenant": "Your Microsoft 365 tenant does not let Sidebar Sync read this mailbox "
                                 "(outside the app's RBAC scope or access policy).",
    },
)

def _exchange_account(access: OrgAccess) -> dict[str, Any]:
    """The org's service account as a connection holds it (its password is the org secret)."""
    return {"ews_url": access.exchange_ews_url, "login": access.exchange_login,
            "auth_type": access.exchange_auth_type, "version": access.exchange_version}


EXCHANGE = OrgProvider(
    name="exchange",
    label="On-premises Exchange",
    ready=lambda access: bool(access.exchange_login),
    missing="Set up the Exchange service account first (Mailbox access > On-premises Exchange).",
    directory=service_directory,
    connection=lambda access, found: {"impersonation": True, **_exchange_account(access)},
    uses=lambda mailbox: mailbox.provider == "exchange" and bool(mailbox.connection.get("impersonation")),
    # Every impersonated mailbox is read with the org's current service account (``current``): one break
    # stops them all, whichever login activated them.
    scope=lambda mailbox: "service_account",
    access_scope=None,
    refused=service_refused,
    secrets=(SECRET_PASSWORD,),
    current=lambda access: _exchange_account(access),
    messages={
        "no_mailbox": "Exchange has no mailbox for this address.",
        "mailbox_mismatch": "This address is not the primary address of the Exchange mailbox found for it (an "
                            "alias, a former address or a loose name match): activate the mailbox's primary "
                            "address.",
        "not_allowed_by_tenant": "The service account may not impersonate this mailbox (outside the "
                                 "ApplicationImpersonation role's management scope).",
    },
)

GOOGLE = OrgProvider(
    name="google",
    label="Google Workspace",
    ready=lambda access: bool(access.google_client_id),
    missing="Set up the Google Workspace service account first (Mailbox access > Google Workspace).",
    directory=workspace_directory,
    connection=lambda access, found: {"delegated": True, "client_id": access.google_client_id,
                                      "client_email": access.google_client_email,
                                      "domain": found.address.rpartition("@")[2]},
    uses=lambda mailbox: mailbox.provider == "google" and bool(mailbox.connection.get("delegated")),
    # One key per org reads every delegated mailbox (whichever client id activated it): a break stops them all.
    scope=lambda mailbox: "org_key",
    access_scope=None,
    refused=delegation_refused_now,
    secrets=(SECRET_KEY,),
    messages={
        "no_mailbox": "Google Workspace has no user with this address.",
        "mailbox_mismatch": "Google signs this address in as another account (an alias or a former address): "
                            "activate the account's primary address.",
        "not_allowed_by_tenant": "This address is outside your Google Workspace domain, or Gmail is turned off "
                                 "for the person's organisational unit.",
    },
)

# The explicit provider map (no discovery): what mass activation supports.
ORG_PROVIDERS: dict[str, OrgProvider] = {MICROSOFT.name: MICROSOFT, EXCHANGE.name: EXCHANGE, GOOGLE.name: GOOGLE}


def served_by_org_access(provider: OrgProvider, access: OrgAccess, mailbox: SyncMailbox) -> bool:
    """True when ``mailbox`` is read with the org's connected access of ``provider`` (not only the same kind)."""
    if not provider.ready(access) or not provider.uses(mailbox):
        return False
    return provider.access_scope is None or provider.access_scope(access) == provider.scope(mailbox)


def uses_org_access(mailbox: SyncMailbox) -> bool:
    """True when the mailbox is read with its org's access (of any provider), not a person's own."""
    provider = ORG_PROVIDERS.get(mailbox.provider)
    return provider is not None and provider.uses(mailbox)
