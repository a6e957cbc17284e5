"""The Salesforce CRM for one run: :class:`~backend.connectors.crm.Crm` over the REST client.

Every call counts against the org's daily API allowance, so the modules behind this class batch
hard (lookups in :mod:`.lookup`, writes in :mod:`.writes`); this class only ties them together for
one run and keeps the per-run caches true after a write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from backend.config import Settings
from backend.connectors.crm import ApiUsage, Capabilities, ExistingEvent, Lookup, Person, WritePlan, WriteResult
from backend.connectors.salesforce.capabilities import CapabilityCache, OrgCapabilities
from backend.connectors.salesforce.client import SalesforceClient
from backend.connectors.salesforce.credentials import SalesforceCredentials
from backend.connectors.salesforce.lookup import Lookups
from backend.connectors.salesforce.soql import soql_quote
from backend.connectors.salesforce.writes import write_plan


class SalesforceCrm:
    """The :class:`~backend.connectors.crm.Crm` protocol over Salesforce's REST API, for one run."""

    def __init__(self, client: SalesforceClient, org_id: str, owner_id: str, key_field: str,
                 caps_cache: CapabilityCache | None = None) -> None:
        self.client = client
        self.org_id = org_id
        self.owner_id = owner_id
        # The configured API name of our key field (named in setup messages).
        self.key_field = key_field
        self._capabilities = OrgCapabilities(client, org_id, key_field, caps_cache)
        self._lookups = Lookups(client, self._capabilities)

    @property
    def calls(self) -> int:
        """REST API calls made by this instance (token refreshes are not API calls)."""
        return self.client.calls

    @property
    def last_usage(self) -> ApiUsage | None:
        """The org's usage from the last response's ``Sforce-Limit-Info`` header."""
        return self.client.last_usage

    def capabilities(self) -> Capabilities:
        """Enhanced Email on or off, and whether our key field exists (one call per org per day)."""
        return self._capabilities.get()

    def api_usage(self) -> ApiUsage | None:
        """The org's daily API usage from the Limits resource (one call)."""
        return self.client.api_usage()

    def match(self, addresses: Iterable[str]) -> dict[str, Person]:
        """Contacts and Leads by address (see :meth:`lookup`)."""
        return self.lookup(addresses, (), ()).people

    def existing_emails(self, keys: Iterable[str]) -> set[str]:
        """Message-IDs the org already holds (see :meth:`lookup`)."""
        return self.lookup((), keys, ()).existing_emails

    def existing_events(self, keys: Iterable[str]) -> dict[str, ExistingEvent]:
        """Events the org already holds (see :meth:`lookup`)."""
        return self.lookup((), (), keys).existing_events

    def lookup(self, addresses: Iterable[str], email_keys: Iterable[str], event_keys: Iterable[str]) -> Lookup:
        """People by address and existing keys, asking Salesforce only about what this run has not seen."""
        return self._lookups.lookup(addresses, email_keys, event_keys)

    def names(self, ids: Iterable[str]) -> dict[str, str]:
        """Display names of Contacts and Leads by record id (one query per object asked about)."""
        wanted = sorted({i for i in ids if i})[:50]
        found: dict[str, str] = {}
        # Contact ids start with 003, Lead ids with 00Q: ask only the object that can hold them.
        for obj, prefix in (("Contact", "003"), ("Lead", "00Q")):
            mine = [i for i in wanted if i.startswith(prefix)]
            if not mine:
                continue
            # Every value is a quoted literal (soql_quote); the object name is one of two constants.
            literals = ", ".join(soql_quote(i) for i in mine)
            soql = f"SELECT Id, FirstName, LastName FROM {obj} WHERE Id IN ({literals})"  # noqa: S608
            body = self.client.call(lambda sf, q=soql: sf.query(q))  # type: ignore[misc]
            for row in self.client.all_records(body):
                name = " ".join(str(row.get(f) or "").strip() for f in ("FirstName", "LastName")).strip()
                found[str(row.get("Id") or "")] = name
        return found

    def look_ahead(self, addresses: Iterable[str], email_keys: Iterable[str], event_keys: Iterable[str]) -> None:
        """Ask about the next batch in the free query slots of the next write (no call of its own)."""
        self._lookups.ahead(addresses, email_keys, event_keys)

    def forget(self, email_keys: Iterable[str] = (), event_keys: Iterable[str] = ()) -> None:
        """Drop cached answers about these keys (another run may have written them meanwhile)."""
        self._lookups.forget(email_keys, event_keys)

    def write(self, plan: WritePlan) -> WriteResult:
        """Write a plan (see :func:`~backend.connectors.salesforce.writes.write_plan`); refusals are reported."""
        if not plan:
            return WriteResult()
        result, units = write_plan(self.client, plan, self.capabilities(), self.key_field,
                                   ahead=self._lookups.take_ahead())
        self._lookups.remember_writes(units, plan, result)
        return result

    def close(self) -> None:
        """Release connections."""
        self.client.close()


def open_crm(
    settings: Settings,
    credentials: SalesforceCredentials,
    org_id: str,
    owner_id: str,
    caps_cache: CapabilityCache | None = None,
    on_usage: Callable[[ApiUsage], None] | None = None,
) -> SalesforceCrm:
    """The Salesforce connector for one run of one user's sync."""
    client = SalesforceClient(settings, credentials, on_usage=on_usage)
    return SalesforceCrm(client, org_id, owner_id, settings.SF_ACTIVITY_KEY_FIELD, caps_cache=caps_cache)
