"""On-premises Exchange as an org provider: the org's service account from the store, its directory and its check."""

from __future__ import annotations

from backend.clients import Clients
from backend.config import Settings
from backend.connectors.exchange.impersonation import SECRET_PASSWORD, ImpersonationDirectory, ServiceAccount
from backend.errors import ServiceMisconfigured
from backend.store import Store
from backend.store.org_access import OrgAccess


def service_account(store: Store, access: OrgAccess) -> ServiceAccount:
    """The org's service account with its password (ServiceMisconfigured when none is kept)."""
    password = store.org_access.get_secret(access.org_id, SECRET_PASSWORD)
    if not password or not access.exchange_login:
        raise ServiceMisconfigured("No Exchange service account is set up for this organisation.")
    return ServiceAccount(access.exchange_login, password, access.exchange_ews_url, access.exchange_auth_type,
                          access.exchange_version)


def service_directory(settings: Settings, clients: Clients, store: Store, access: OrgAccess) -> ImpersonationDirectory:
    """The org's mailboxes as its service account finds them."""
    return ImpersonationDirectory(settings, service_account(store, access), clients.dns_resolver)


def service_refused(settings: Settings, clients: Clients, store: Store, access: OrgAccess) -> str | None:
    """Why Exchange refuses the org's service account now (one request), or None."""
    try:
        directory = service_directory(settings, clients, store, access)
    except ServiceMisconfigured as exc:
        return exc.message
    try:
        return directory.refused()
    finally:
        directory.close()
