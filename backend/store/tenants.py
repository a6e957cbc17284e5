"""Microsoft 365 tenants whose administrator gave admin consent (tenant-wide, app-only access)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from backend.store.codec import decode, encode
from backend.store.keys import Keys


@dataclass
class TenantConsent:
    """A tenant's admin consent as recorded on return from the admin-consent endpoint."""

    tenant_id: str
    consented: bool = False
    scope: str = ""
    consented_at: float = 0.0
    # Who started the consent (a uid of ours, when known) - never a token.
    consented_by: str = ""
    updated_at: float = field(default_factory=time.time)


class TenantRepo:
    """Reads and writes tenant consents (``P mstenant:{tid}``, and the set ``P mstenants``)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def get(self, tenant_id: str) -> TenantConsent | None:
        """The tenant's recorded consent, or None."""
        data = self._r.hgetall(self._keys("mstenant", tenant_id))
        return decode(TenantConsent, data) if data else None  # type: ignore[arg-type]

    def has_consent(self, tenant_id: str) -> bool:
        """True when the tenant's administrator consented (and it was not withdrawn)."""
        consent = self.get(tenant_id) if tenant_id else None
        return bool(consent and consent.consented)

    def record_consent(self, tenant_id: str, scope: str, by: str = "") -> TenantConsent:
        """Record a tenant's admin consent."""
        consent = TenantConsent(tenant_id=tenant_id, consented=True, scope=scope, consented_at=time.time(),
                                consented_by=by)
        with self._r.pipeline() as pipe:
            pipe.hset(self._keys("mstenant", tenant_id), mapping=encode(consent))  # type: ignore[arg-type]
            pipe.sadd(self._keys("mstenants"), tenant_id)
            pipe.execute()
        return consent

    def withdraw(self, tenant_id: str) -> None:
        """Forget a tenant's consent (the administrator removed the app, or app-only access failed)."""
        with self._r.pipeline() as pipe:
            pipe.delete(self._keys("mstenant", tenant_id))
            pipe.srem(self._keys("mstenants"), tenant_id)
            pipe.execute()

    def all_ids(self) -> list[str]:
        """Every tenant with a recorded consent."""
        return sorted(str(t) for t in self._r.smembers(self._keys("mstenants")))
