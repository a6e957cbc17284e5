"""What an org supports: Enhanced Email on or off, and whether our activity key field exists.

Asked with one Composite call (the global describe and the Event describe) and cached per org
between runs, so a run usually pays nothing for it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from backend.connectors.crm import Capabilities
from backend.connectors.salesforce.client import SalesforceClient

log = logging.getLogger(__name__)


class CapabilityCache(Protocol):
    """Where org capabilities are cached between runs (Redis, in production)."""

    def get(self, org_id: str) -> dict[str, object] | None:
        """The cached capabilities of an org, or None."""
        ...

    def put(self, org_id: str, value: dict[str, object]) -> None:
        """Cache an org's capabilities."""
        ...


class OrgCapabilities:
    """The capabilities of one org, described at most once per run (and once per org while cached)."""

    def __init__(self, client: SalesforceClient, org_id: str, key_field: str,
                 cache: CapabilityCache | None = None) -> None:
        self.client = client
        self.org_id = org_id
        # The configured API name of our key field; the org's own spelling of it is what we use.
        self.key_field = key_field
        self.cache = cache
        self._caps: Capabilities | None = None

    @property
    def known(self) -> Capabilities | None:
        """The capabilities if this run already has them, without a call."""
        return self._caps

    def get(self) -> Capabilities:
        """Enhanced Email on or off, and whether our key field exists (one call per org per day)."""
        if self._caps is not None:
            return self._caps
        cached = self.cache.get(self.org_id) if self.cache else None
        if cached:
            self._caps = Capabilities.from_dict(cached)
            return self._caps
        path = self.client.path
        responses = self.client.composite([
            {"method": "GET", "url": f"{path}/sobjects", "referenceId": "global"},
            {"method": "GET", "url": f"{path}/sobjects/Event/describe", "referenceId": "event"},
        ])
        by_ref = {r.get("referenceId"): r for r in responses}
        sobjects = (by_ref.get("global", {}).get("body") or {}).get("sobjects") or []
        enhanced = any(
            o.get("name") == "EmailMessageRelation" and o.get("createable") for o in sobjects if isinstance(o, dict)
        )
        event_fields = (by_ref.get("event", {}).get("body") or {}).get("fields") or []
        names = {str(f.get("name", "")).lower(): str(f.get("name")) for f in event_fields if isinstance(f, dict)}
        key_field = names.get(self.key_field.lower(), "")
        self._caps = Capabilities(enhanced_email=enhanced, activity_key_field=key_field)
        if self.cache:
            self.cache.put(self.org_id, self._caps.as_dict())
        log.info("salesforce capabilities org=%s enhanced_email=%s key_field=%s", self.org_id, enhanced,
                 bool(key_field))
        return self._caps
