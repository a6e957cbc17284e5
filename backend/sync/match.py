"""Matching a batch against the CRM: every participant address at once, plus the dedup keys.

One call to :meth:`Crm.lookup` per batch carries the addresses of all its items (case-insensitive,
each looked up once per run thanks to the connector's cache), the Message-IDs and the meeting
keys, so matching and dedup cost one Composite request for most batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from backend.connectors.crm import Crm, Lookup, Person
from backend.connectors.mailbox import Address, EmailItem, EventItem
from backend.sync.filters import Filters


def addresses_to_match(filters: Filters, emails: Iterable[EmailItem], events: Iterable[EventItem]) -> set[str]:
    """Every external, non-blocked participant address of the batch, lower-cased."""
    found: set[str] = set()
    for email in emails:
        found.update(filters.matchable(email.participants))
    for event in events:
        found.update(filters.matchable(event.participants))
    return found


def lookup_batch(crm: Crm, filters: Filters, emails: list[EmailItem], events: list[EventItem]) -> Lookup:
    """People for the batch's participants and which of its items the CRM already holds."""
    addresses = addresses_to_match(filters, emails, events)
    email_keys = {e.dedup_key for e in emails}
    event_keys = {e.dedup_key for e in events}
    if not (addresses or email_keys or event_keys):
        return Lookup()
    return crm.lookup(sorted(addresses), sorted(email_keys), sorted(event_keys))


def people_of(addresses: Iterable[Address | None], people: Mapping[str, Person], filters: Filters) -> list[Person]:
    """The matched people among ``addresses``, in order, each once (blocked and internal ones never)."""
    result: dict[str, Person] = {}
    for address in addresses:
        if address is None:
            continue
        person = people.get(address.email)
        if person is not None and person.id not in result and filters.is_matchable(address.email):
            result[person.id] = person
    return list(result.values())
