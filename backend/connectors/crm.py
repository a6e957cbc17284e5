"""The CRM protocol: what the sync engine needs from Salesforce, in Salesforce-neutral terms.

The engine matches the participants of a batch of items to people (Contacts and Leads), asks which
items the CRM already holds (dedup keys live in the CRM, not in Redis), and hands over a
:class:`WritePlan`. The connector (:mod:`backend.connectors.salesforce`) turns that plan into as
few API calls as the limits allow and reports, per item, what was written and what was refused.

Nothing here imports a vendor library.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from backend.errors import ConnectorError, Throttled

# Marker appended to a text cut to fit a CRM field: a person sees that something is missing.
TRUNCATION_MARKER = " [...]"


class PersonKind(StrEnum):
    """What kind of CRM record a matched address belongs to."""

    CONTACT = "Contact"
    LEAD = "Lead"
    USER = "User"


@dataclass(frozen=True)
class Person:
    """A CRM record an email address belongs to."""

    id: str
    kind: PersonKind
    email: str


@dataclass(frozen=True)
class ApiUsage:
    """The org's API usage as the CRM last reported it (calls in the rolling 24 hours)."""

    used: int
    limit: int

    @property
    def percent(self) -> float:
        """Usage as a percentage of the limit (0 when the limit is unknown)."""
        return (100.0 * self.used / self.limit) if self.limit else 0.0


@dataclass(frozen=True)
class Capabilities:
    """What the org supports, found once (describe) and cached per org."""

    # Enhanced Email on: emails are EmailMessage records; off: Task records with TaskSubtype Email.
    enhanced_email: bool
    # The custom activity field that holds our dedup key (events, and email tasks); "" when missing.
    activity_key_field: str

    def as_dict(self) -> dict[str, object]:
        """For the per-org cache."""
        return {"enhanced_email": self.enhanced_email, "activity_key_field": self.activity_key_field}

    @staticmethod
    def from_dict(data: dict[str, object]) -> Capabilities:
        """From the per-org cache."""
        return Capabilities(bool(data.get("enhanced_email")), str(data.get("activity_key_field") or ""))


@dataclass(frozen=True)
class ExistingEvent:
    """An event the CRM already holds, with the fields a changed meeting may update."""

    id: str
    key: str
    subject: str = ""
    start: datetime | None = None
    end: datetime | None = None
    is_all_day: bool = False
    location: str = ""
    description: str = ""
    related_ids: frozenset[str] = frozenset()
    # ISO date (all-day meetings are dated by it); "" when unknown.
    activity_date: str = ""
    who_id: str = ""
    # (person id, EventRelation id) of each relation row.
    relation_rows: tuple[tuple[str, str], ...] = ()


@dataclass
class Lookup:
    """What the CRM knows about a batch: people by address, existing emails and events by key."""

    people: dict[str, Person] = field(default_factory=dict)
    existing_emails: set[str] = field(default_factory=set)
    existing_events: dict[str, ExistingEvent] = field(default_factory=dict)
    # Record id of each existing email (EmailMessage orgs), by key.
    email_ids: dict[str, str] = field(default_factory=dict)
    # Existing emails that have no sender relation (FromAddress): a write that died half-way left
    # them so; a rerun that would have written them adds the relation.
    emails_without_sender: set[str] = field(default_factory=set)
    # The (person id, relation type) rows each existing email has (EmailMessage orgs), by key: a
    # rerun adds the missing ones (To and Cc as well as the sender).
    email_relations: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)


@dataclass
class EmailDraft:
    """An email to log, already mapped: addresses by role, matched people by role."""

    key: str  # Message-ID (or its stable stand-in): the dedup key across the org
    subject: str
    body: str
    from_address: str
    from_name: str
    to_addresses: list[str]
    cc_addresses: list[str]
    message_date: datetime | None
    outgoing: bool
    to_ids: list[str] = field(default_factory=list)
    cc_ids: list[str] = field(default_factory=list)
    bcc_ids: list[str] = field(default_factory=list)
    # The sender as a CRM record (matched contact/lead for incoming mail, the owner for outgoing).
    from_id: str = ""
    # Every matched Contact/Lead, first = primary (used where only one link exists: Task.WhoId).
    people_ids: list[str] = field(default_factory=list)


@dataclass
class EventDraft:
    """A meeting to log or update."""

    key: str  # iCalendar UID (+ occurrence): the dedup key across the org
    subject: str
    body: str
    location: str
    start: datetime
    end: datetime
    is_all_day: bool
    people_ids: list[str] = field(default_factory=list)


# EmailMessageRelation types by the draft's role lists.
RELATION_TYPES = (("from", "FromAddress"), ("to", "ToAddress"), ("cc", "CcAddress"), ("bcc", "BccAddress"))


def draft_relations(draft: EmailDraft) -> list[tuple[str, str]]:
    """Every (person id, relation type) an email's draft relates: the sender, To, Cc and Bcc."""
    roles = {"from": [draft.from_id] if draft.from_id else [], "to": draft.to_ids, "cc": draft.cc_ids,
             "bcc": draft.bcc_ids}
    found: list[tuple[str, str]] = []
    for role, kind in RELATION_TYPES:
        found.extend((pid, kind) for pid in dict.fromkeys(roles[role]) if pid)
    return found


@dataclass(frozen=True)
class SenderRepair:
    """An email the CRM holds without some of its relations, and the draft that says who they are.

    ``rows`` are the (person id, relation type) rows to add (the sender, To, Cc); empty means the
    sender relation only (what a repair was before To and Cc were repaired too).
    """

    record_id: str
    draft: EmailDraft
    rows: tuple[tuple[str, str], ...] = ()

    def missing(self) -> list[tuple[str, str]]:
        """The (person id, relation type) rows to add."""
        if self.rows:
            return list(self.rows)
        return [(self.draft.from_id, "FromAddress")] if self.draft.from_id else []


@dataclass(frozen=True)
class RelationRemoval:
    """People to unrelate from a meeting the CRM holds (attendees removed that this product related)."""

    event: ExistingEvent
    person_ids: tuple[str, ...]
    # When the meeting's WhoId is among them: who takes its place ("" clears it).
    new_who_id: str = ""


@dataclass
class WritePlan:
    """Everything one batch writes. Cancelled meetings are either deleted or marked."""

    emails: list[EmailDraft] = field(default_factory=list)
    new_events: list[EventDraft] = field(default_factory=list)
    changed_events: list[tuple[ExistingEvent, EventDraft]] = field(default_factory=list)
    cancelled_events: list[tuple[ExistingEvent, str]] = field(default_factory=list)  # (event, "delete"|"mark")
    sender_repairs: list[SenderRepair] = field(default_factory=list)
    # People to unrelate from meetings (attendees removed, whom this product had related).
    removed_relations: list[RelationRemoval] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.emails or self.new_events or self.changed_events or self.cancelled_events
                    or self.sender_repairs or self.removed_relations)


@dataclass(frozen=True)
class Rejected:
    """One record the CRM refused: the item's key, the object, and the CRM's reason (no content)."""

    key: str
    object: str
    reason: str


@dataclass
class WriteResult:
    """What a plan did."""

    emails_written: int = 0
    events_written: int = 0
    events_updated: int = 0
    events_unchanged: int = 0
    events_deleted: int = 0
    events_marked: int = 0
    relations_written: int = 0
    # Meeting relations removed (attendees who left a meeting this product had related).
    relations_removed: int = 0
    # Sender relations added to emails the CRM already held without one (included in relations_written).
    relations_repaired: int = 0
    # Records Salesforce already held (written meanwhile by a colleague's run): logged once, not lost.
    duplicates: int = 0
    # Keys written now (an email or event key), so the rest of the run treats them as existing.
    written_keys: set[str] = field(default_factory=set)
    # Record id of each item created now, by key (what the pane links to).
    written_ids: dict[str, str] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    # Refused for a reason that passes (a locked row, a server error): not quarantined; the run that
    # wrote the plan must fail as transient before saving its cursors, so a retry writes them.
    transient: list[Rejected] = field(default_factory=list)

    def merge(self, other: WriteResult) -> None:
        """Add another result to this one."""
        for name in ("emails_written", "events_written", "events_updated", "events_unchanged", "events_deleted",
                     "events_marked", "relations_written", "relations_removed", "relations_repaired", "duplicates"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.written_keys |= other.written_keys
        self.written_ids.update(other.written_ids)
        self.rejected.extend(other.rejected)
        self.transient.extend(other.transient)


class ApiLimitExceeded(Throttled):
    """The org used up its daily API allowance (background sync backs off for the whole org)."""

    code = "api_limit_exceeded"

    def __init__(self, message: str = "", retry_after: float = 1800.0) -> None:
        super().__init__(message or "Your organisation reached its daily Salesforce API limit.", retry_after)


class CrmRequestFailed(ConnectorError):
    """The CRM refused a request in a way a retry will not fix (a bug or a missing permission)."""

    transient = False
    code = "crm_request_failed"


class CrmSetupMissing(ConnectorError):
    """The org lacks something sync needs (for example the dedup key field on activities)."""

    transient = False
    code = "crm_setup_missing"


@runtime_checkable
class Crm(Protocol):
    """What the sync engine needs from the CRM. One instance serves one run (its caches are per run)."""

    @property
    def calls(self) -> int:
        """API calls made so far (each composite request counts once, as the CRM counts it)."""
        ...

    def capabilities(self) -> Capabilities:
        """What the org supports (cached per org; at most one call when the cache is cold)."""
        ...

    def lookup(self, addresses: Iterable[str], email_keys: Iterable[str], event_keys: Iterable[str]) -> Lookup:
        """People for ``addresses`` and which keys exist, in as few calls as possible (cached per run)."""
        ...

    def match(self, addresses: Iterable[str]) -> dict[str, Person]:
        """Contacts and Leads by lower-cased address (case-insensitive; unknown addresses absent)."""
        ...

    def existing_emails(self, keys: Iterable[str]) -> set[str]:
        """The Message-IDs among ``keys`` the CRM already holds for the org."""
        ...

    def existing_events(self, keys: Iterable[str]) -> dict[str, ExistingEvent]:
        """The events among ``keys`` the CRM already holds for the org."""
        ...

    def forget(self, email_keys: Iterable[str] = (), event_keys: Iterable[str] = ()) -> None:
        """Drop cached answers about these keys, so the next lookup asks the CRM again."""
        ...

    def look_ahead(self, addresses: Iterable[str], email_keys: Iterable[str], event_keys: Iterable[str]) -> None:
        """Ask about these with the next write, in its free query slots (no call of its own; best effort)."""
        ...

    def names(self, ids: Iterable[str]) -> dict[str, str]:
        """Display names of people (Contacts, Leads) by record id; unknown ids absent."""
        ...

    def write(self, plan: WritePlan) -> WriteResult:
        """Write emails and events, update and cancel meetings; refused records are reported, not raised."""
        ...

    def api_usage(self) -> ApiUsage | None:
        """Ask the CRM for the org's current API usage (one call)."""
        ...

    @property
    def last_usage(self) -> ApiUsage | None:
        """The usage reported by the last response, without a call."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def utf16_length(text: str) -> int:
    """The length Salesforce (Java) gives ``text``: UTF-16 code units, so an emoji counts twice."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def clip(text: str | None, limit: int, marker: str = TRUNCATION_MARKER) -> str:
    """``text`` cut to ``limit`` (UTF-16 units, as Salesforce counts), ending with ``marker`` when cut."""
    value = text or ""
    if len(value) * 2 <= limit or utf16_length(value) <= limit:
        return value
    marker = marker[:limit]
    budget = max(0, limit - utf16_length(marker))
    # Whole code points only: never half of a surrogate pair.
    used = 0
    end = 0
    for ch in value:
        width = 2 if ord(ch) > 0xFFFF else 1
        if used + width > budget:
            break
        used += width
        end += 1
    return value[:end] + marker


def join_addresses(addresses: Iterable[str], limit: int) -> str:
    """Addresses joined by "; ", cut at a whole address with "(+N more)" to fit ``limit`` characters."""
    items = list(addresses)
    total = sum(len(a) for a in items) + 2 * max(0, len(items) - 1)
    if total <= limit:
        return "; ".join(items)
    kept: list[str] = []
    length = 0
    for index, address in enumerate(items):
        grown = length + (2 if kept else 0) + len(address)
        suffix = len(f"; (+{len(items) - index - 1} more)")
        if grown + suffix > limit:
            break
        kept.append(address)
        length = grown
    rest = len(items) - len(kept)
    text = "; ".join(kept) + (f"; (+{rest} more)" if kept else f"(+{rest} more)")
    return text[:limit]
