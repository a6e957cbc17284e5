"""The org's Salesforce users by email, for mass activation: ``User.Email`` / ``IsActive``, batched SOQL."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backend.connectors.salesforce.client import SalesforceClient
from backend.connectors.salesforce.soql import chunk_in_list

_FIELDS = "SELECT Id, Username, Email, Name, IsActive FROM User"


@dataclass(frozen=True)
class DirectoryUser:
    """A Salesforce user as mass activation needs them (no secret)."""

    user_id: str
    username: str
    email: str
    name: str
    active: bool


def _rows(client: SalesforceClient, soql: str) -> list[DirectoryUser]:
    body = client.call(lambda sf: sf.query(soql))
    return [DirectoryUser(str(r.get("Id") or ""), str(r.get("Username") or ""), str(r.get("Email") or ""),
                          str(r.get("Name") or ""), bool(r.get("IsActive")))
            for r in client.all_records(body) if r.get("Id")]


def users_by_email(client: SalesforceClient, addresses: Iterable[str]) -> dict[str, list[DirectoryUser]]:
    """The org's users whose Email is one of ``addresses`` (lower case keys), a few queries for thousands."""
    wanted = sorted({a.strip().lower() for a in addresses if a.strip()})
    found: dict[str, list[DirectoryUser]] = {a: [] for a in wanted}
    for soql in chunk_in_list(f"{_FIELDS} WHERE Email IN ", wanted, path=f"{client.path}/query"):
        for row in _rows(client, soql):
            found.setdefault(row.email.lower(), []).append(row)
    return found


def active_users(client: SalesforceClient) -> list[DirectoryUser]:
    """Every active user of the org with an email address ("activate everyone")."""
    return [u for u in _rows(client, f"{_FIELDS} WHERE IsActive = true") if u.email]
