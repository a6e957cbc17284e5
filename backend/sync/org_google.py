"""Google Workspace as an org provider: the org's service account key from the store, its directory and its check."""

from __future__ import annotations

from backend.clients import Clients
from backend.config import Settings
from backend.connectors.google.delegation import SECRET_KEY, ServiceAccountKey, delegation_refused, parse_key
from backend.connectors.google.directory import WorkspaceDirectory
from backend.errors import ServiceMisconfigured, SetupFailed
from backend.store import Store
from backend.store.org_access import OrgAccess


def org_key(store: Store, access: OrgAccess) -> ServiceAccountKey:
    """The org's service account key (ServiceMisconfigured when none, or an unusable one, is kept)."""
    raw = store.org_access.get_secret(access.org_id, SECRET_KEY)
    if not raw or not access.google_client_id:
        raise ServiceMisconfigured("No Google Workspace service account is set up for this organisation.")
    try:
        return parse_key(raw)
    except SetupFailed as exc:
        raise ServiceMisconfigured(exc.message) from None


def workspace_directory(settings: Settings, clients: Clients, store: Store, access: OrgAccess) -> WorkspaceDirectory:
    """The org's Workspace mailboxes as its service account finds them (delegated tokens)."""
    return WorkspaceDirectory(settings, org_key(store, access), access.google_domains, clients.google_auth.session)


def delegation_refused_now(settings: Settings, clients: Clients, store: Store, access: OrgAccess) -> str | None:
    """Why Google refuses the org's key or delegation now (one token request as the proved address), or None."""
    try:
        key = org_key(store, access)
    except ServiceMisconfigured as exc:
        return exc.message
    return delegation_refused(settings, key, access.google_address or key.client_email, clients.google_auth.session)
