"""Entra ID (Microsoft identity) facts: the scopes sync asks for, tenants and authority URLs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from backend.config import Settings

# What sync reads: mail, calendars, contacts and the user's profile (for the mailbox match).
# msal adds openid, profile and offline_access itself (and refuses them here).
GRAPH_SCOPES: tuple[str, ...] = ("Mail.Read", "Calendars.Read", "Contacts.Read", "User.Read")
# Tenant "names" that are not one tenant: client credentials and admin consent need a real one.
MULTI_TENANT = frozenset({"organizations", "common", "consumers"})
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,252}$")


def authority_origin(settings: Settings) -> str:
    """``https://host[:port]`` of ``MS_AUTHORITY``."""
    parts = urlsplit(settings.MS_AUTHORITY)
    return f"{parts.scheme}://{parts.netloc}"


def default_tenant(settings: Settings) -> str:
    """The tenant segment of ``MS_AUTHORITY`` (``organizations`` for a multi-tenant app)."""
    path = urlsplit(settings.MS_AUTHORITY).path.strip("/")
    return path.split("/")[0] if path else "organizations"


def valid_tenant(tenant: str) -> bool:
    """True for a tenant id (GUID) or verified domain; refuses anything that could bend a URL."""
    return bool(_TENANT_RE.match(tenant or "")) and ".." not in tenant


def usable_tenant(tenant: str | None) -> str | None:
    """``tenant`` when it is a valid tenant, else None (the configured authority's tenant is used)."""
    return tenant if tenant and valid_tenant(tenant) else None


def authority_for(settings: Settings, tenant: str | None = None) -> str:
    """The authority URL for ``tenant`` (or the configured one)."""
    if tenant and not valid_tenant(tenant):
        raise ValueError("not a tenant id")
    return f"{authority_origin(settings)}/{tenant or default_tenant(settings)}"


def is_microsoft_authority(settings: Settings) -> bool:
    """True when ``MS_AUTHORITY`` is one of Microsoft's own login hosts.

    Only those get msal's authority validation and instance discovery; any other host (a private
    cloud proxy, a test double) must be trusted explicitly by configuring it.
    """
    host = (urlsplit(settings.MS_AUTHORITY).hostname or "").lower()
    return host in WELL_KNOWN_AUTHORITY_HOSTS
