"""Composite requests of sObject Collections: the shapes of one write, and how records are packed.

Writes are sObject Collections of up to 200 records with ``allOrNone = false``, sent as subrequests
of Composite requests (at most 5 collections, so up to 1,000 records per API call). Relation rows
(EmailMessageRelation for the sender, EventRelation for more attendees) reference the records
created by an earlier subrequest of the same request (``@{ref[i].id}``), so one new email with its
relations is one write call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from backend.connectors.crm import Rejected

# Limits of the platform (REST API developer guide).
COLLECTION_MAX = 200
COMPOSITE_MAX_HEAVY = 5  # queries and collections per Composite request

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` cut into consecutive slices of at most ``size``."""
    return [items[start:start + size] for start in range(0, len(items), size)]


@dataclass(eq=False)
class Unit:
    """One record to create, and the relation rows that hang off it once it has an id."""

    key: str
    object: str
    record: dict[str, Any]
    kind: str  # "email" or "event"
    relations: list[dict[str, Any]] = field(default_factory=list)
    relation_parent_field: str = ""
    id: str = ""
    failed: bool = False
    # The create subrequest that carries the record (relations in the same request reference it).
    create: Sub | None = None
    # A holder of an existing record whose missing sender relation is being added.
    repair: bool = False


@dataclass(eq=False)
class Sub:
    """One collection subrequest of a Composite request."""

    method: str
    records: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    # What each record is: for creates the unit, for relations (unit, template), for updates (key, label).
    units: list[Unit] = field(default_factory=list)
    relations: list[tuple[Unit, dict[str, Any]]] = field(default_factory=list)
    meta: list[tuple[str, str]] = field(default_factory=list)
    role: str = ""  # create | relation | update | delete | query
    ref: str = ""
    positions: dict[int, int] | None = None
    # True when a relation row points at a record created earlier in the same request (@{ref}).
    referenced: bool = False
    # True for relation rows sent again after a transient refusal (they are not sent a third time).
    retried: bool = False
    # A look-up riding in a write request's free query slot (role "query"): its URL and its unit.
    url: str = ""
    unit: Any = None

    def record_count(self) -> int:
        """How many records the subrequest carries (a method, not __len__: a Sub is never falsy)."""
        if self.role == "create":
            return len(self.units)
        if self.role == "relation":
            return len(self.relations)
        return len(self.meta)

    def refused(self, index: int, reason: str) -> Rejected:
        """The record at ``index`` as refused by Salesforce, with ``reason`` (a create is marked failed)."""
        if self.role == "create":
            unit = self.units[index]
            unit.failed = True
            return Rejected(unit.key, unit.object, reason)
        if self.role == "relation":
            unit, template = self.relations[index]
            return Rejected(unit.key, str(template["attributes"]["type"]), reason)
        return Rejected(self.meta[index][0], "Event", reason)

    def position(self, unit: Unit) -> int:
        """Where ``unit`` sits in this create subrequest (by identity)."""
        if self.positions is None:
            self.positions = {id(u): i for i, u in enumerate(self.units)}
        return self.positions[id(unit)]


def relation_subs(pairs: Sequence[tuple[Unit, dict[str, Any]]], retried: bool = False) -> list[Sub]:
    """Relation rows ``(parent unit, row template)`` in collections of 200."""
    return [Sub("POST", relations=list(part), role="relation", retried=retried)
            for part in chunks(pairs, COLLECTION_MAX)]


def _subrequests_for(records: int, relations: int) -> int:
    """Collections needed for ``records`` creates and ``relations`` relation rows (200 each)."""
    return -(-records // COLLECTION_MAX) + -(-relations // COLLECTION_MAX)


def pack_creates(units: list[Unit]) -> tuple[list[list[Sub]], list[Sub]]:
    """Composite requests for ``units``: every record travels with its relation rows.

    A record and its relations are never split across two requests: if the second request failed,
    the rerun would find the record and never write its relations. So a request takes as many whole
    records (with their relations) as five collections of 200 hold: 400 emails with their sender
    relation, or 1,000 records without relations. Only a record with more than 800 relations (a
    meeting with that many matched attendees) cannot travel whole; its extra relations follow in
    later requests (returned second), and a rerun adds what is missing to an existing meeting.
    """
    groups: list[list[Sub]] = []
    overflow: list[Sub] = []
    i = 0
    while i < len(units):
        records = relations = 0
        j = i
        while j < len(units):
            more = len(units[j].relations)
            if _subrequests_for(records + 1, relations + more) > COMPOSITE_MAX_HEAVY:
                break
            records, relations, j = records + 1, relations + more, j + 1
        if j == i:
            unit = units[i]
            room = (COMPOSITE_MAX_HEAVY - 1) * COLLECTION_MAX
            rest, unit.relations = unit.relations[room:], unit.relations[:room]
            overflow.extend(relation_subs([(unit, t) for t in rest]))
            j = i + 1
        chunk = units[i:j]
        group: list[Sub] = []
        for part in chunks(chunk, COLLECTION_MAX):
            create = Sub("POST", records=[u.record for u in part], units=list(part), role="create")
            for unit in part:
                unit.create = create
            group.append(create)
        group.extend(relation_subs([(u, r) for u in chunk for r in u.relations]))
        groups.append(group)
        i = j
    return groups, overflow


def pack_requests(groups: list[list[Sub]], standalone: list[Sub], overflow: list[Sub]) -> list[list[Sub]]:
    """All Composite requests of a write: records with their relations, then independent work, then overflow."""
    # Independent work fills the free collections of the last request, then requests of its own.
    for sub in standalone:
        if groups and len(groups[-1]) < COMPOSITE_MAX_HEAVY:
            groups[-1].append(sub)
        else:
            groups.append([sub])
    # Relations of a record too big to travel whole go after the request that creates it.
    groups.extend(list(part) for part in chunks(overflow, COMPOSITE_MAX_HEAVY))
    return groups
