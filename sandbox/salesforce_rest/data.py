"""The fake Salesforce's REST data: records, sObject metadata, recorded calls, the knobs tests turn."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ID_PREFIX = {
    "Contact": "003", "Lead": "00Q", "EmailMessage": "02s", "EmailMessageRelation": "0Ee", "Task": "00T",
    "Event": "00U", "EventRelation": "0RE", "Account": "001",
}
FIELD_LENGTHS: dict[str, dict[str, int]] = {
    "EmailMessage": {"Subject": 3000, "TextBody": 131_072, "FromAddress": 1000, "FromName": 1000,
                     "ToAddress": 4000, "CcAddress": 4000, "BccAddress": 4000, "MessageIdentifier": 765},
    "EmailMessageRelation": {"RelationAddress": 255},
    "Task": {"Subject": 255, "Description": 32_000},
    "Event": {"Subject": 255, "Description": 32_000, "Location": 255},
    "Contact": {"Email": 80},
    "Lead": {"Email": 80},
}
CHILD_RELATIONSHIPS = {
    ("EmailMessage", "EmailMessageRelations"): ("EmailMessageRelation", "EmailMessageId"),
    ("Event", "EventRelations"): ("EventRelation", "EventId"),
}
REFERENCE_FIELDS = {"WhoId", "RelationId", "ToIds", "CcIds", "BccIds", "EmailMessageId", "EventId"}
JUNCTION_TYPES = {"ToIds": "ToAddress", "CcIds": "CcAddress", "BccIds": "BccAddress"}
DATETIME_FIELDS = {"StartDateTime", "EndDateTime", "MessageDate", "ActivityDateTime"}


@dataclass
class RestCall:
    """One REST API call (a composite request is one call, as Salesforce counts it)."""

    kind: str  # query | query_more | composite | collection | describe | limits
    method: str
    path: str
    subrequests: list[tuple[str, str]] = field(default_factory=list)  # (method, resource kind)
    records_written: int = 0
    queries: list[str] = field(default_factory=list)
    status: int = 200
    answered: bool = True  # False: committed, then the connection was cut (``lose_write_answers``)

    @property
    def is_write(self) -> bool:
        """True when the call created, changed or deleted records."""
        return any(kind == "collection" and method != "GET" for method, kind in self.subrequests) or (
            self.kind == "collection" and self.method != "GET")


@dataclass
class Rule:
    """A validation rule: records of ``sobject`` for which ``predicate`` is true are refused."""

    sobject: str
    predicate: Callable[[dict[str, Any]], bool]
    message: str
    # The error code (a lock or a server error makes a transient refusal) and how many records it
    # refuses before it stops applying (None: every time).
    code: str = "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    times: int | None = None


@dataclass
class SalesforceData:
    """Records and knobs of the fake org."""

    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    deleted_ids: set[str] = field(default_factory=set)
    enhanced_email: bool = True
    key_field: str | None = "Sidebar_Sync_Key__c"
    api_used: int = 0
    api_max: int = 100_000
    query_page_size: int = 2000
    # Knobs tests turn.
    limit_exceeded: bool = False
    fail_unavailable: int = 0
    # Let this many write calls through, then answer the next one 503 (once); None: off.
    fail_write_after: int | None = None
    write_delay: float = 0.0
    # The answer lost: this many write calls are processed (their records committed), then their
    # connection is cut without a response, as when a network drops the reply (keep-alive server only).
    lose_write_answers: int = 0
    # The signed-in user's time zone (TimeZoneSidKey): an Event written without ActivityDate gets
    # the date of its StartDateTime there, as Salesforce derives it.
    user_timezone: str = "UTC"
    # Shared Activities' rule (up to 50 contacts or one lead an event) enforced; off only where a
    # test needs a record with more relation rows than the rule allows (request packing).
    event_people_rule: bool = True
    rules: list[Rule] = field(default_factory=list)
    calls: list[RestCall] = field(default_factory=list)
    user_ids: Callable[[], set[str]] = lambda: set()
    # PermissionSetAssignment rows (AssigneeId, PermissionSet{Name, PermissionsModifyAllData, IsOwnedByProfile}).
    permission_assignments: Callable[[], list[dict[str, Any]]] = lambda: []
    # User rows (from the fake's users) and the user a request was signed in as (per serving thread):
    # records created get CreatedById (and OwnerId unless given) of that user.
    user_rows: Callable[[], list[dict[str, Any]]] = lambda: []
    acting: threading.local = field(default_factory=threading.local)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _cursors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    # -- seeding and inspection -----------------------------------------------------------------
    def new_id(self, sobject: str) -> str:
        """A fresh 18-character id with the object's key prefix."""
        return f"{ID_PREFIX.get(sobject, 'a00')}{next(self._ids):012d}AAA"

    def insert(self, sobject: str, **fields: Any) -> str:
        """Add a record directly (seeding); returns its id."""
        with self.lock:
            rid = self.new_id(sobject)
            self.records.setdefault(sobject, {})[rid] = {"Id": rid, **fields}
            return rid

    def add_contact(self, email: str, last_name: str = "Contact", **fields: Any) -> str:
        """Seed a Contact."""
        return self.insert("Contact", Email=email, LastName=last_name, **fields)

    def add_lead(self, email: str, last_name: str = "Lead", converted: bool = False, **fields: Any) -> str:
        """Seed a Lead."""
        return self.insert("Lead", Email=email, LastName=last_name, Company="Acme", IsConverted=converted, **fields)

    def delete(self, rid: str) -> None:
        """Delete a record (as a person in Salesforce would)."""
        with self.lock:
            for table in self.records.values():
                if table.pop(rid, None) is not None:
                    self.deleted_ids.add(rid)

    def all(self, sobject: str) -> list[dict[str, Any]]:
        """Every record of an object."""
        with self.lock:
            return [dict(r) for r in self.records.get(sobject, {}).values()]

    def reset_calls(self) -> None:
        """Forget recorded calls."""
        with self.lock:
            self.calls.clear()

    def calls_of(self, kind: str | None = None) -> list[RestCall]:
        """Recorded calls (of one kind)."""
        with self.lock:
            return [c for c in self.calls if kind is None or c.kind == kind]

    @property
    def write_calls(self) -> list[RestCall]:
        """Calls that wrote records."""
        with self.lock:
            return [c for c in self.calls if c.is_write]


def data_of(state: Any) -> SalesforceData:
    """The REST data of a fake Salesforce state (created on first use)."""
    data: SalesforceData | None = getattr(state, "rest", None)
    if data is None:
        data = SalesforceData()
        data.user_ids = lambda: {u.user_id for u in state.users.values()}
        data.permission_assignments = lambda: state.permission_assignments()
        data.user_rows = lambda: state.user_rows()
        state.rest = data
    return data



class ApiFailure(Exception):
    """An error response of the whole call."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = [{"errorCode": code, "message": message}]
