"""An org's mailbox access for mass activation: which Microsoft 365 tenant consented, and whether it works.

``P orgaccess:{org}`` is a hash of non-secret facts (the tenant id, the Exchange service account's
login, the Google service account's client email and id and the Workspace domains, who connected
each and when, the open breakage per provider). Secrets an org's connection needs (a service account's password or
key) go only through the secret store (kind ``org``), encrypted, and are never read back for display.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from backend.store.keys import Keys
from backend.store.secrets import SecretStore

PROVIDERS = ("microsoft", "exchange", "google")

# Marks the org connection broken unless it already is; returns 1 when this call opened the incident.
_BREAK = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


@dataclass
class OrgAccess:
    """The org's mailbox access as the console shows it (never a secret)."""

    org_id: str
    microsoft_tenant: str = ""
    microsoft_connected_at: float = 0.0
    microsoft_connected_by: str = ""
    # On-premises Exchange: the service account (ApplicationImpersonation) and where EWS is.
    exchange_login: str = ""
    exchange_ews_url: str = ""
    exchange_auth_type: str = ""
    exchange_version: str = ""
    exchange_autodiscovered: bool = False
    exchange_connected_at: float = 0.0
    exchange_connected_by: str = ""
    # Google Workspace: the service account (domain-wide delegation; its key only in the secret store).
    google_client_email: str = ""
    google_client_id: str = ""
    google_project_id: str = ""
    google_domains: tuple[str, ...] = ()
    # The address the key was proved with (the broken-org check signs in as it again).
    google_address: str = ""
    google_connected_at: float = 0.0
    google_connected_by: str = ""
    # provider -> {"code", "message", "since", "incident"} while that connection is broken.
    broken: dict[str, dict[str, Any]] = field(default_factory=dict)

    def is_broken(self, provider: str) -> bool:
        """True while ``provider``'s org connection is marked broken."""
        return provider in self.broken


# Frees a tenant only while this org holds it (another org may have taken it since).
_RELEASE_TENANT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class TenantTaken(Exception):
    """The Microsoft 365 tenant is connected to another org."""


class OrgAccessRepo:
    """Reads and writes org connections (``P orgaccess:{org}``; secrets as ``secret:org:{org}:{name}``)."""

    SECRET_KIND = "org"  # noqa: S105 - a key name

    def __init__(self, client: redis.Redis, keys: Keys, secrets: SecretStore) -> None:
        self._r = client
        self._keys = keys
        self._secrets = secrets

    def _key(self, org_id: str) -> str:
        return self._keys("orgaccess", org_id)

    def get(self, org_id: str) -> OrgAccess:
        """The org's access (empty when nothing is connected)."""
        raw: dict[str, str] = self._r.hgetall(self._key(org_id))  # type: ignore[assignment]
        access = OrgAccess(org_id=org_id, microsoft_tenant=raw.get("microsoft_tenant", ""),
                           microsoft_connected_at=float(raw.get("microsoft_connected_at") or 0),
                           microsoft_connected_by=raw.get("microsoft_connected_by", ""))
        for name in ("login", "ews_url", "auth_type", "version", "connected_by"):
            setattr(access, f"exchange_{name}", raw.get(f"exchange_{name}", ""))
        access.exchange_autodiscovered = raw.get("exchange_autodiscovered") == "1"
        access.exchange_connected_at = float(raw.get("exchange_connected_at") or 0)
        for name in ("client_email", "client_id", "project_id", "address", "connected_by"):
            setattr(access, f"google_{name}", raw.get(f"google_{name}", ""))
        access.google_domains = tuple(d for d in raw.get("google_domains", "").split(",") if d)
        access.google_connected_at = float(raw.get("google_connected_at") or 0)
        for provider in PROVIDERS:
            if f"broken:{provider}" in raw:
                access.broken[provider] = json.loads(raw[f"broken:{provider}"])
        return access

    def tenant_owner(self, tenant_id: str) -> str:
        """The org a Microsoft 365 tenant is connected to, or ""."""
        return str(self._r.get(self._keys("mstenant-org", tenant_id)) or "")

    def connect_microsoft(self, org_id: str, tenant_id: str, by: str) -> bool:
        """Record the tenant whose admin consented for this org; True when it ends a breakage (people resume).

        A tenant serves one org: TenantTaken when another org has it (its mailboxes are that org's to log).
        """
        owner_key = self._keys("mstenant-org", tenant_id)
        if not self._r.set(owner_key, org_id, nx=True) and self.tenant_owner(tenant_id) != org_id:
            raise TenantTaken(tenant_id)
        previous = str(self._r.hget(self._key(org_id), "microsoft_tenant") or "")
        with self._r.pipeline() as pipe:
            pipe.hset(self._key(org_id), mapping={"microsoft_tenant": tenant_id,
                                                  "microsoft_connected_at": str(time.time()),
                                                  "microsoft_connected_by": by})
            pipe.hdel(self._key(org_id), "broken:microsoft")
            if previous and previous != tenant_id:
                pipe.delete(self._keys("mstenant-org", previous))  # the org moved on: that tenant is free
            results = pipe.execute()
        return bool(results[1])

    def connect_exchange(self, org_id: str, by: str, **facts: str) -> None:
        """Record the org's Exchange service account (login, ews_url, auth_type, version, autodiscovered; no secret)."""
        self._r.hset(self._key(org_id), mapping={**{f"exchange_{k}": v for k, v in facts.items()},
                                                 "exchange_connected_at": str(time.time()),
                                                 "exchange_connected_by": by})

    def connect_google(self, org_id: str, by: str, domains: tuple[str, ...], **facts: str) -> None:
        """Record the org's Google service account (client_email, client_id, project_id, address; no key)."""
        self._r.hset(self._key(org_id), mapping={**{f"google_{k}": v for k, v in facts.items()},
                                                 "google_domains": ",".join(domains),
                                                 "google_connected_at": str(time.time()),
                                                 "google_connected_by": by})

    def mark_broken(self, org_id: str, provider: str, code: str, message: str) -> str | None:
        """Mark ``provider``'s org connection broken; the new incident id, or None when it already was."""
        now = time.time()
        incident = f"{provider}-{int(now)}"
        details = json.dumps({"code": code, "message": message, "since": now, "incident": incident})
        opened = self._r.eval(_BREAK, 1, self._key(org_id), f"broken:{provider}", details)
        return incident if opened else None

    def clear_broken(self, org_id: str, provider: str) -> bool:
        """End a breakage (the connection works again); True when one was open."""
        return bool(self._r.hdel(self._key(org_id), f"broken:{provider}"))

    def disconnect(self, org_id: str, provider: str, secret_names: tuple[str, ...]) -> bool:
        """Forget ``provider``'s org connection (facts, breakage, secrets, its tenant); True when one was set."""
        raw: dict[str, str] = self._r.hgetall(self._key(org_id))  # type: ignore[assignment]
        doomed = [name for name in raw if name.startswith(f"{provider}_") or name == f"broken:{provider}"]
        with self._r.pipeline() as pipe:
            if doomed:
                pipe.hdel(self._key(org_id), *doomed)
            for name in secret_names:
                pipe.delete(self._secrets.key_of(self.SECRET_KIND, org_id, name))
            tenant = raw.get("microsoft_tenant", "") if provider == "microsoft" else ""
            if tenant:
                pipe.eval(_RELEASE_TENANT, 1, self._keys("mstenant-org", tenant), org_id)
            pipe.execute()
        return bool(doomed)

    def put_secret(self, org_id: str, name: str, value: str) -> None:
        """Keep one of the org connection's secrets, encrypted (it is never shown back)."""
        self._secrets.put(self.SECRET_KIND, org_id, name, value)

    def get_secret(self, org_id: str, name: str) -> str | None:
        """One of the org connection's secrets, for the connector that uses it (never for display)."""
        return self._secrets.get(self.SECRET_KIND, org_id, name)

    def has_secret(self, org_id: str, name: str) -> bool:
        """Whether a secret is kept (what the console may say instead of showing it)."""
        return self._secrets.get(self.SECRET_KIND, org_id, name) is not None
