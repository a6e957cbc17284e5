"""Lookups for one run: Contacts and Leads by address, existing emails and meetings by key.

Lookups are SOQL ``IN`` lists chunked to the statement and URI limits, sent as subrequests of one
Composite request (at most 5 queries each, one API call), and cached for the run so an address or
key is asked about once. The Message-ID lookup also returns whether each existing email has its
sender relation, so a rerun repairs an email an earlier, broken run left without one, at no extra
call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from backend.connectors.crm import (
    ApiLimitExceeded,
    Capabilities,
    CrmRequestFailed,
    ExistingEvent,
    Lookup,
    Person,
    PersonKind,
    WritePlan,
    WriteResult,
)
from backend.connectors.salesforce.batches import COMPOSITE_MAX_HEAVY, Unit, chunks
from backend.connectors.salesforce.capabilities import OrgCapabilities
from backend.connectors.salesforce.client import SalesforceClient
from backend.connectors.salesforce.records import activity_key
from backend.connectors.salesforce.soql import chunk_groups, chunk_in_list, query_url

# Existing emails by Message-ID, with their sender relation (child rows count toward a query page).
EMAIL_LOOKUP_PREFIX = ("SELECT Id, MessageIdentifier, (SELECT Id, RelationId, RelationType FROM "
                       "EmailMessageRelations) FROM EmailMessage WHERE MessageIdentifier IN ")
_EVENT_COLUMNS = "Subject, StartDateTime, EndDateTime, IsAllDayEvent, ActivityDate, Location, Description, WhoId"


def address_variants(address: str) -> set[str]:
    """The forms an address may be stored in: as given, and with its domain in ASCII (IDNA) and Unicode."""
    address = address.strip().lower()
    local, _, domain = address.rpartition("@")
    variants = {address}
    if not local or not domain:
        return variants
    try:
        variants.add(f"{local}@{domain.encode('idna').decode('ascii')}")
    except UnicodeError:
        pass
    try:
        variants.add(f"{local}@{domain.encode('ascii').decode('idna')}")
    except UnicodeError:
        pass
    return variants


def _parse_dt(value: Any) -> datetime | None:
    """A Salesforce datetime (``+0000`` or ``Z``) as an aware datetime; None when absent or unreadable."""
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    if len(text) >= 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _sub_records(value: Any) -> list[dict[str, Any]]:
    """The rows of a relationship subquery in a query result (absent when there are none)."""
    if isinstance(value, dict):
        return [r for r in value.get("records") or [] if isinstance(r, dict)]
    return []


def _by_key(rows: list[dict[str, Any]], key_field: str, asked: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """Rows whose key field holds a stored key we asked about, with our key (SOQL ignores case, so do we)."""
    stored = {k.lower(): v for k, v in asked.items()}
    found = []
    for row in rows:
        original_key = stored.get(str(row.get(key_field) or "").lower())
        if original_key:
            found.append((original_key, row))
    return found


@dataclass(eq=False)
class LookupUnit:
    """Queries answered together, and how their rows fill the caches (``read`` gets the rows by kind)."""

    queries: list[tuple[str, str]]
    read: Callable[[dict[str, list[dict[str, Any]]]], None]


def empty_rows() -> dict[str, list[dict[str, Any]]]:
    """Rows by query kind, none yet."""
    return {"Contact": [], "Lead": [], "EmailMessage": [], "Task": [], "Event": []}


class Lookups:
    """The per-run caches of people and existing records, filled by batched SOQL lookups."""

    def __init__(self, client: SalesforceClient, capabilities: OrgCapabilities) -> None:
        self.client = client
        self.capabilities = capabilities
        # Per-run caches: an address or key is asked about once per run.
        self._people: dict[str, Person | None] = {}
        self._emails: dict[str, bool] = {}
        # Existing EmailMessages: key -> (record id, has a FromAddress relation).
        self._email_records: dict[str, tuple[str, bool, frozenset[tuple[str, str]]]] = {}
        self._events: dict[str, ExistingEvent | None] = {}
        # Look-ups prepared for the next batch, to ride in the free query slots of the next write.
        self._ahead: list[LookupUnit] = []

    def lookup(self, addresses: Iterable[str], email_keys: Iterable[str], event_keys: Iterable[str]) -> Lookup:
        """People by address and existing keys, asking Salesforce only about what this run has not seen."""
        wanted_addresses = sorted({a.strip().lower() for a in addresses if a and "@" in a})
        wanted_emails = sorted({k for k in email_keys if k})
        wanted_events = sorted({k for k in event_keys if k})
        new_addresses = [a for a in wanted_addresses if a not in self._people]
        new_emails = [k for k in wanted_emails if k not in self._emails]
        new_events = [k for k in wanted_events if k not in self._events]
        if new_addresses or new_emails or new_events:
            self._fetch(new_addresses, new_emails, new_events)
        result = Lookup()
        for address in wanted_addresses:
            person = self._people.get(address)
            if person is not None:
                result.people[address] = person
        result.existing_emails = {k for k in wanted_emails if self._emails.get(k)}
        for key in result.existing_emails:
            found = self._email_records.get(key)
            if found is not None:
                result.email_ids[key] = found[0]
                result.email_relations[key] = found[2]
                if not found[1]:
                    result.emails_without_sender.add(key)
        for key in wanted_events:
            event = self._events.get(key)
            if event is not None:
                result.existing_events[key] = event
        return result

    def forget(self, email_keys: Iterable[str] = (), event_keys: Iterable[str] = ()) -> None:
        """Drop cached answers about these keys (another run may have written them meanwhile)."""
        for key in email_keys:
            self._emails.pop(key, None)
            self._email_records.pop(key, None)
        for key in event_keys:
            self._events.pop(key, None)

    def remember_writes(self, units: list[Unit], plan: WritePlan, result: WriteResult) -> None:
        """Keep the caches true after a write: what now exists, and meetings to ask about again."""
        for unit in units:
            if unit.kind == "email" and unit.key in result.written_keys:
                self._emails[unit.key] = True
            elif unit.kind == "event":
                self._events.pop(unit.key, None)
        for existing, _ in plan.changed_events:
            self._events.pop(existing.key, None)
        for existing, _ in plan.cancelled_events:
            self._events.pop(existing.key, None)
        for removal in plan.removed_relations:
            self._events.pop(removal.event.key, None)
        for repair in plan.sender_repairs:
            self._email_records.pop(repair.draft.key, None)

    def ahead(self, addresses: Iterable[str], email_keys: Iterable[str], event_keys: Iterable[str]) -> None:
        """Prepare the look-ups of what this run has not seen, to ride in the next write's free query slots.

        No call of its own: :meth:`take_ahead` hands the queries to the next write; what does not fit
        there (or fails) is simply asked by the next :meth:`lookup`. Uses only capabilities already known.
        """
        new_addresses = sorted({a.strip().lower() for a in addresses if a and "@" in a} - set(self._people))
        new_emails = sorted({k for k in email_keys if k} - set(self._emails))
        new_events = sorted({k for k in event_keys if k} - set(self._events))
        units = self._units(new_addresses, new_emails, new_events, self.capabilities.known)
        self._ahead = [u for u in units if u.queries]

    def take_ahead(self) -> list[LookupUnit]:
        """The prepared look-ahead units (each read into the caches once all its queries are answered)."""
        units, self._ahead = self._ahead, []
        return units

    def _fetch(self, addresses: list[str], email_keys: list[str], event_keys: list[str]) -> None:
        caps = self.capabilities.get() if (email_keys or event_keys) else self.capabilities.known
        units = self._units(addresses, email_keys, event_keys, caps)
        rows = self._run([q for u in units for q in u.queries], f"{self.client.path}/query")
        for unit in units:
            unit.read(rows)

    def _units(self, addresses: list[str], email_keys: list[str], event_keys: list[str],
               caps: Capabilities | None) -> list[LookupUnit]:
        """The queries for these values, in units read together (a person needs its Contact and Lead answers)."""
        path = f"{self.client.path}/query"
        key_field = caps.activity_key_field if caps else ""
        units: list[LookupUnit] = []
        if addresses:
            variant_of: dict[str, str] = {}
            for address in addresses:
                for variant in address_variants(address):
                    variant_of.setdefault(variant, address)
            variants = sorted(variant_of)
            queries = [("Contact", soql) for soql in chunk_in_list("SELECT Id, Email FROM Contact WHERE Email IN ",
                                                                   variants, " ORDER BY Id", path=path)]
            queries += [("Lead", soql) for soql in chunk_in_list(
                "SELECT Id, Email FROM Lead WHERE IsConverted = false AND Email IN ", variants, " ORDER BY Id",
                path=path)]
            units.append(LookupUnit(queries, partial(self._read_people, addresses, variant_of)))
        # key_field is an API name checked by Settings.check(); values are quoted by soql_quote.
        email_units = 0
        if email_keys and caps is not None:
            if caps.enhanced_email:
                # The sender relation comes along (a subquery, no extra call): an email a broken run
                # left without it is repaired by the next run that would have written the email.
                for soql, chunk in chunk_groups(EMAIL_LOOKUP_PREFIX, email_keys, path=path):
                    units.append(LookupUnit([("EmailMessage", soql)], partial(self._read_message_rows, chunk)))
                    email_units += 1
            elif key_field:
                email_key_of = {activity_key(k): k for k in email_keys}
                select = f"SELECT Id, {key_field} FROM Task WHERE {key_field} IN "  # noqa: S608
                for soql, chunk in chunk_groups(select, sorted(email_key_of), path=path):
                    of = {a: email_key_of[a] for a in chunk}
                    units.append(LookupUnit([("Task", soql)], partial(self._read_task_rows, of, key_field)))
                    email_units += 1
        if email_keys and not email_units:
            units.append(LookupUnit([], partial(self._read_message_rows, email_keys)))
        if event_keys and key_field:
            event_key_of = {activity_key(k): k for k in event_keys}
            select = (f"SELECT Id, {key_field}, {_EVENT_COLUMNS}, (SELECT Id, RelationId FROM EventRelations) "  # noqa: S608
                      f"FROM Event WHERE {key_field} IN ")
            for soql, chunk in chunk_groups(select, sorted(event_key_of), path=path):
                of = {a: event_key_of[a] for a in chunk}
                units.append(LookupUnit([("Event", soql)], partial(self._read_event_rows, of, key_field)))
        elif event_keys:
            units.append(LookupUnit([], partial(self._read_event_rows, {e: e for e in event_keys}, "")))
        return units

    def _read_message_rows(self, keys: list[str], rows: dict[str, list[dict[str, Any]]]) -> None:
        self._read_emails(keys, rows["EmailMessage"], [])

    def _read_task_rows(self, asked: dict[str, str], key_field: str, rows: dict[str, list[dict[str, Any]]]) -> None:
        self._read_emails(sorted(asked.values()), [], _by_key(rows["Task"], key_field, asked))

    def _read_event_rows(self, asked: dict[str, str], key_field: str, rows: dict[str, list[dict[str, Any]]]) -> None:
        for key in asked.values():
            self._events.setdefault(key, None)
        for original_key, row in _by_key(rows["Event"], key_field, asked) if key_field else []:
            self._events[original_key] = _existing_event(original_key, row)

    def _run(self, queries: list[tuple[str, str]], path: str) -> dict[str, list[dict[str, Any]]]:
        """The rows of each kind of query, five queries to a Composite request (one API call)."""
        rows = empty_rows()
        for group in chunks(queries, COMPOSITE_MAX_HEAVY):
            subrequests = [
                {"method": "GET", "url": query_url(path, soql), "referenceId": f"q{i}"}
                for i, (_, soql) in enumerate(group)
            ]
            responses = self.client.composite(subrequests)
            by_ref = {r.get("referenceId"): r for r in responses}
            for i, (kind, _) in enumerate(group):
                response = by_ref.get(f"q{i}") or {}
                status = int(response.get("httpStatusCode") or 0)
                body = response.get("body")
                if status >= 300 or not isinstance(body, dict):
                    code = body[0].get("errorCode", "") if isinstance(body, list) and body else ""
                    if code == "REQUEST_LIMIT_EXCEEDED":
                        raise ApiLimitExceeded()
                    raise CrmRequestFailed(f"A Salesforce lookup failed ({code or status}).")
                rows[kind].extend(self.client.all_records(body))
        return rows

    def _read_people(self, addresses: list[str], variant_of: dict[str, str],
                     rows: dict[str, list[dict[str, Any]]]) -> None:
        # A Contact wins over a Lead for the same address; the oldest record (lowest Id) first.
        best: dict[str, Person] = {}
        for kind, person_kind in (("Contact", PersonKind.CONTACT), ("Lead", PersonKind.LEAD)):
            for row in sorted(rows[kind], key=lambda r: str(r.get("Id", ""))):
                original = variant_of.get(str(row.get("Email") or "").strip().lower())
                if original is not None and original not in best:
                    best[original] = Person(str(row["Id"]), person_kind, original)
        for address in addresses:
            self._people[address] = best.get(address)

    def _read_emails(self, email_keys: list[str], messages: list[dict[str, Any]],
                     tasks: list[tuple[str, dict[str, Any]]]) -> None:
        # SOQL compares text without regard to case: map what comes back to our keys the same way.
        asked = {k.lower(): k for k in email_keys}
        for key in email_keys:
            self._emails.setdefault(key, False)
        for row in sorted(messages, key=lambda r: str(r.get("Id", ""))):
            original_key = asked.get(str(row.get("MessageIdentifier") or "").lower())
            if original_key:
                self._emails[original_key] = True
                present = frozenset((str(r.get("RelationId") or ""), str(r.get("RelationType") or ""))
                                    for r in _sub_records(row.get("EmailMessageRelations")))
                has_sender = any(kind == "FromAddress" for _, kind in present)
                known = self._email_records.get(original_key)
                # Older duplicates (from before claims existed) count as one: any of them with a
                # sender relation is enough, else the oldest gets it.
                if known is None or (has_sender and not known[1]):
                    self._email_records[original_key] = (str(row["Id"]), has_sender, present)
        for original_key, _ in tasks:
            self._emails[original_key] = True


def _existing_event(key: str, row: dict[str, Any]) -> ExistingEvent:
    """A meeting the org holds, with everyone already related to it (WhoId and EventRelations)."""
    rows = tuple((str(r.get("RelationId")), str(r.get("Id") or "")) for r in _sub_records(row.get("EventRelations")))
    related = {person for person, _ in rows}
    if row.get("WhoId"):
        related.add(str(row["WhoId"]))
    return ExistingEvent(
        id=str(row["Id"]),
        key=key,
        subject=str(row.get("Subject") or ""),
        start=_parse_dt(row.get("StartDateTime")),
        end=_parse_dt(row.get("EndDateTime")),
        is_all_day=bool(row.get("IsAllDayEvent")),
        activity_date=str(row.get("ActivityDate") or "")[:10],
        who_id=str(row.get("WhoId") or ""),
        relation_rows=rows,
        location=str(row.get("Location") or ""),
        description=str(row.get("Description") or ""),
        related_ids=frozenset(related),
    )
