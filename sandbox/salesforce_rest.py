"""The REST data API of the fake Salesforce: query, composite, sObject Collections, describe, limits.

Registered on the fake's Flask app by :func:`register`. It keeps records in memory
(:class:`SalesforceData`, reachable as ``state.rest``) and behaves as the real API does where the
sync engine depends on it:

* A small SOQL subset: ``SELECT f, (SELECT g FROM ChildRel) FROM Obj WHERE a IN (...) AND b = x
  ORDER BY f LIMIT n``; text comparisons ignore case; results page at ``query_page_size`` rows with
  ``nextRecordsUrl``.
* Composite (at most 25 subrequests, at most 5 of them queries or collections, ``@{ref[i].id}``
  references, one API call for the whole request) and sObject Collections (at most 200 records,
  ``allOrNone``, per-record errors: validation rules, ``STRING_TOO_LONG`` (echoing the value, as
  Salesforce does), deleted or unknown references, duplicate external ids).
* ``EmailMessage`` junction lists (``ToIds``, ``CcIds``, ``BccIds``) create ``EmailMessageRelation``
  rows; Enhanced Email can be switched off (no ``EmailMessageRelation`` in the global describe).
* ``Sforce-Limit-Info: api-usage=N/M`` on every response; injectable ``REQUEST_LIMIT_EXCEEDED``,
  503s (the next calls, or the write call after N successful ones) and slow writes; expired
  sessions through the base fake's tokens.
* Every REST call is recorded in :attr:`SalesforceData.calls` for exact call-count assertions.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask, Response, request

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
    rules: list[Rule] = field(default_factory=list)
    calls: list[RestCall] = field(default_factory=list)
    user_ids: Callable[[], set[str]] = lambda: set()
    # PermissionSetAssignment rows (AssigneeId, PermissionSet{Name, PermissionsModifyAllData, IsOwnedByProfile}).
    permission_assignments: Callable[[], list[dict[str, Any]]] = lambda: []
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
        state.rest = data
    return data


# -- SOQL ---------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>!=|<=|>=|[(),=<>])|"
                    r"(?P<word>[A-Za-z_][A-Za-z0-9_.]*))")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}


class SoqlError(ValueError):
    """A statement the fake cannot parse (Salesforce would answer MALFORMED_QUERY)."""


def _tokens(soql: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    soql = soql.strip()
    while pos < len(soql):
        match = _TOKEN.match(soql, pos)
        if not match or match.end() == pos:
            raise SoqlError(f"unexpected text at {pos}")
        pos = match.end()
        if match.group("str") is not None:
            raw = match.group("str")[1:-1]
            out.append(("str", re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), raw)))
        elif match.group("num") is not None:
            out.append(("num", float(match.group("num"))))
        elif match.group("op") is not None:
            out.append(("op", match.group("op")))
        else:
            out.append(("word", match.group("word")))
    return out


@dataclass
class Query:
    """A parsed statement."""

    sobject: str
    fields: list[str]
    children: list[Query]
    child_name: str
    conditions: list[tuple[str, str, Any]]
    order_by: str | None
    descending: bool
    limit: int | None


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self) -> tuple[str, Any]:
        if self.i >= len(self.t):
            raise SoqlError("unexpected end")
        tok = self.t[self.i]
        self.i += 1
        return tok

    def word(self, expected: str | None = None) -> str:
        kind, value = self.take()
        if kind != "word" or (expected and value.upper() != expected):
            raise SoqlError(f"expected {expected or 'a name'}, got {value!r}")
        return str(value)

    def op(self, expected: str) -> None:
        kind, value = self.take()
        if kind != "op" or value != expected:
            raise SoqlError(f"expected {expected!r}, got {value!r}")

    def literal(self) -> Any:
        kind, value = self.take()
        if kind in ("str", "num"):
            return value
        if kind == "word" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if kind == "word" and value.lower() == "null":
            return None
        raise SoqlError(f"expected a value, got {value!r}")

    def query(self, nested: bool = False) -> Query:
        self.word("SELECT")
        fields: list[str] = []
        children: list[Query] = []
        while True:
            tok = self.peek()
            if tok == ("op", "("):
                self.take()
                children.append(self.query(nested=True))
                self.op(")")
            else:
                fields.append(self.word())
            if self.peek() == ("op", ","):
                self.take()
                continue
            break
        self.word("FROM")
        sobject = self.word()
        conditions: list[tuple[str, str, Any]] = []
        order_by, descending, limit = None, False, None
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].upper() == "WHERE":
            self.take()
            while True:
                name = self.word()
                kind, value = self.take()
                if kind == "word" and value.upper() == "IN":
                    self.op("(")
                    values = [self.literal()]
                    while self.peek() == ("op", ","):
                        self.take()
                        values.append(self.literal())
                    self.op(")")
                    conditions.append((name, "IN", values))
                elif kind == "op" and value in ("=", "!="):
                    conditions.append((name, value, self.literal()))
                else:
                    raise SoqlError(f"unsupported operator {value!r}")
                tok = self.peek()
                if tok and tok[0] == "word" and tok[1].upper() == "AND":
                    self.take()
                    continue
                break
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].upper() == "ORDER":
            self.take()
            self.word("BY")
            order_by = self.word()
            tok = self.peek()
            if tok and tok[0] == "word" and tok[1].upper() in ("ASC", "DESC"):
                descending = self.take()[1].upper() == "DESC"
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].upper() == "LIMIT":
            self.take()
            limit = int(self.literal())
        if not nested and self.peek() is not None:
            raise SoqlError(f"unexpected {self.peek()!r}")
        child_name = sobject if nested else ""
        return Query(sobject, fields, children, child_name, conditions, order_by, descending, limit)


def parse_soql(soql: str) -> Query:
    """Parse the supported SOQL subset."""
    return _Parser(_tokens(soql)).query()


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if isinstance(b, bool) or isinstance(a, bool):
        return bool(a) == bool(b)
    return bool(a == b)


def _matches(record: dict[str, Any], conditions: list[tuple[str, str, Any]]) -> bool:
    for name, op, value in conditions:
        current = record.get(name)
        if op == "IN":
            if not any(_equal(current, v) for v in value):
                return False
        elif op == "=":
            if not _equal(current, value):
                return False
        elif op == "!=" and _equal(current, value):
            return False
    return True


# -- the API --------------------------------------------------------------------------------------
class ApiFailure(Exception):
    """An error response of the whole call."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = [{"errorCode": code, "message": message}]


def register(app: Flask, state: Any) -> None:
    """Add the REST data API to the fake's app."""
    data = data_of(state)

    def attributes(sobject: str, rid: str, version: str) -> dict[str, str]:
        return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{rid}"}

    def project(record: dict[str, Any], query: Query, sobject: str, version: str) -> dict[str, Any]:
        row: dict[str, Any] = {"attributes": attributes(sobject, record["Id"], version)}
        for name in query.fields:
            parent, dot, child = name.partition(".")
            if dot:  # a parent relationship's field: nested as Salesforce answers it
                related = record.get(parent)
                if isinstance(related, dict):
                    row.setdefault(parent, {"attributes": {"type": parent}})[child] = related.get(child)
                else:
                    row[parent] = None
            else:
                row[name] = record.get(name)
        for child in query.children:
            key = (sobject, child.child_name)
            if key not in CHILD_RELATIONSHIPS:
                raise SoqlError(f"unknown relationship {child.child_name}")
            child_type, parent_field = CHILD_RELATIONSHIPS[key]
            rows = [
                {"attributes": attributes(child_type, r["Id"], version), **{f: r.get(f) for f in child.fields}}
                for r in data.records.get(child_type, {}).values()
                if r.get(parent_field) == record["Id"] and _matches(r, child.conditions)
            ]
            row[child.child_name] = {"totalSize": len(rows), "done": True, "records": rows} if rows else None
        return row

    def run_query(soql: str, version: str) -> dict[str, Any]:
        try:
            query = parse_soql(soql)
        except SoqlError as exc:
            raise ApiFailure(400, "MALFORMED_QUERY", str(exc)) from None
        if len(soql) > 100_000:
            raise ApiFailure(400, "MALFORMED_QUERY", "statement too long")
        sobject = query.sobject
        if sobject == "EmailMessageRelation" and not data.enhanced_email:
            raise ApiFailure(400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
        for name in query.fields + [c[0] for c in query.conditions]:
            if name.endswith("__c") and name != data.key_field:
                raise ApiFailure(400, "INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'.")
        with data.lock:
            table = data.records.get(sobject, {}).values()
            if sobject == "PermissionSetAssignment":
                table = data.permission_assignments()  # type: ignore[assignment]
            rows = [r for r in table if _matches(r, query.conditions)]
            if query.order_by:
                rows.sort(key=lambda r: str(r.get(query.order_by or "") or ""), reverse=query.descending)
            if query.limit is not None:
                rows = rows[: query.limit]
            try:
                projected = [project(r, query, sobject, version) for r in rows]
            except SoqlError as exc:
                raise ApiFailure(400, "INVALID_TYPE", str(exc)) from None
        return page(projected, version)

    def page(rows: list[dict[str, Any]], version: str) -> dict[str, Any]:
        size = data.query_page_size
        first, rest = rows[:size], rows[size:]
        body: dict[str, Any] = {"totalSize": len(rows), "done": not rest, "records": first}
        if rest:
            locator = f"01g{next(data._ids):012d}-{size}"
            data._cursors[locator] = rest
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}"
        return body

    def query_more(locator: str, version: str) -> dict[str, Any]:
        rest = data._cursors.pop(locator, None)
        if rest is None:
            raise ApiFailure(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        body = page(rest, version)
        body["totalSize"] = len(rest)
        return body

    # -- records ----------------------------------------------------------------------------------
    def reference_error(name: str, value: Any) -> dict[str, Any] | None:
        ids = value if isinstance(value, list) else [value]
        known = data.user_ids()
        for rid in ids:
            if not rid:
                continue
            rid = str(rid)
            if rid in data.deleted_ids:
                return {"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": [name]}
            exists = rid in known or any(rid in table for table in data.records.values())
            if not exists:
                return {"statusCode": "INVALID_CROSS_REFERENCE_KEY",
                        "message": "invalid cross reference id", "fields": [name]}
        return None

    def validate(sobject: str, record: dict[str, Any], creating: bool) -> dict[str, Any] | None:
        if sobject == "EmailMessageRelation" and not data.enhanced_email:
            return {"statusCode": "INVALID_TYPE", "message": "sObject type not supported", "fields": []}
        if sobject == "Task" and creating and "TaskSubtype" in record and record["TaskSubtype"] not in (
                "Email", "Task", "Call", "ListEmail", "Cadence", "LinkedIn"):
            return {"statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "message": "bad value", "fields": []}
        for name, value in record.items():
            if name.endswith("__c") and name != data.key_field:
                return {"statusCode": "INVALID_FIELD", "message": f"No such column '{name}'", "fields": [name]}
            limit = FIELD_LENGTHS.get(sobject, {}).get(name)
            if name == data.key_field:
                limit = 255
            # Salesforce measures Java strings: UTF-16 code units, so an emoji counts twice.
            if limit is not None and isinstance(value, str) and len(value.encode("utf-16-le")) // 2 > limit:
                # Salesforce quotes the value that did not fit, as here.
                return {"statusCode": "STRING_TOO_LONG",
                        "message": f"{name}: data value too large: {value[:300]} (max length={limit})",
                        "fields": [name]}
            if name in REFERENCE_FIELDS and value:
                error = reference_error(name, value)
                if error:
                    return error
            if isinstance(value, str) and ("\x00" in value or re.search(r"[\ud800-\udfff]", value)):
                return {"statusCode": "INVALID_FIELD", "message": "invalid characters", "fields": [name]}
        for rule in data.rules:
            if rule.sobject == sobject and rule.predicate(record) and (rule.times is None or rule.times > 0):
                if rule.times is not None:
                    rule.times -= 1
                return {"statusCode": rule.code, "message": rule.message, "fields": []}
        if data.key_field and record.get(data.key_field) and sobject in ("Task", "Event"):
            for other in data.records.get(sobject, {}).values():
                if other.get(data.key_field) == record[data.key_field] and other["Id"] != record.get("Id"):
                    return {"statusCode": "DUPLICATE_VALUE",
                            "message": f"duplicate value found: {data.key_field} duplicates value on record with "
                                       f"id: {other['Id']}", "fields": [data.key_field]}
        return None

    def normalise(record: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in record.items():
            if name in DATETIME_FIELDS and isinstance(value, str):
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("+0000", "+00:00"))
                value = parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
            out[name] = value
        return out

    def create(records: list[dict[str, Any]], all_or_none: bool) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        with data.lock:
            staged: list[tuple[str, dict[str, Any]] | None] = []
            for record in records:
                sobject = str((record.get("attributes") or {}).get("type") or "")
                fields = {k: v for k, v in record.items() if k != "attributes"}
                if not sobject:
                    results.append({"success": False, "errors": [
                        {"statusCode": "INVALID_TYPE", "message": "attributes.type is required", "fields": []}]})
                    staged.append(None)
                    continue
                if "Id" in fields:
                    results.append({"success": False, "errors": [
                        {"statusCode": "INVALID_FIELD_FOR_INSERT_UPDATE", "message": "Id not allowed",
                         "fields": ["Id"]}]})
                    staged.append(None)
                    continue
                error = validate(sobject, fields, creating=True)
                if error:
                    results.append({"success": False, "errors": [error]})
                    staged.append(None)
                    continue
                staged.append((sobject, fields))
                results.append({"success": True, "errors": []})
                # Visible to the duplicate check of later records in the same request.
                rid = data.new_id(sobject)
                results[-1]["id"] = rid
                data.records.setdefault(sobject, {})[rid] = {"Id": rid, **normalise(
                    {k: v for k, v in fields.items() if k not in JUNCTION_TYPES})}
                data.records[sobject][rid]["CreatedDate"] = datetime.now(tz=UTC).isoformat()
                if sobject == "EmailMessage":
                    for junction, relation_type in JUNCTION_TYPES.items():
                        for rel in fields.get(junction) or []:
                            rel_id = data.new_id("EmailMessageRelation")
                            data.records.setdefault("EmailMessageRelation", {})[rel_id] = {
                                "Id": rel_id, "EmailMessageId": rid, "RelationId": rel,
                                "RelationType": relation_type}
            if all_or_none and any(not r["success"] for r in results):
                for result, item in zip(results, staged, strict=True):
                    if result["success"] and item is not None:
                        data.records[item[0]].pop(result["id"], None)
                        result.update(success=False, errors=[{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                                              "message": "Record rolled back", "fields": []}])
                        result.pop("id", None)
        return results

    def update(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        with data.lock:
            for record in records:
                sobject = str((record.get("attributes") or {}).get("type") or "")
                rid = str(record.get("Id") or "")
                current = data.records.get(sobject, {}).get(rid)
                if current is None:
                    code = "ENTITY_IS_DELETED" if rid in data.deleted_ids else "INVALID_ID_FIELD"
                    results.append({"id": rid, "success": False, "errors": [
                        {"statusCode": code, "message": "no such record", "fields": ["Id"]}]})
                    continue
                fields = {k: v for k, v in record.items() if k not in ("attributes", "Id")}
                error = validate(sobject, {**fields, "Id": rid}, creating=False)
                if error:
                    results.append({"id": rid, "success": False, "errors": [error]})
                    continue
                current.update(normalise(fields))
                results.append({"id": rid, "success": True, "errors": []})
        return results

    def delete(ids: list[str]) -> list[dict[str, Any]]:
        results = []
        with data.lock:
            for rid in ids:
                found = False
                for table in data.records.values():
                    if table.pop(rid, None) is not None:
                        found = True
                if found:
                    data.deleted_ids.add(rid)
                    results.append({"id": rid, "success": True, "errors": []})
                else:
                    code = "ENTITY_IS_DELETED" if rid in data.deleted_ids else "INVALID_CROSS_REFERENCE_KEY"
                    results.append({"id": rid, "success": False, "errors": [
                        {"statusCode": code, "message": "entity is deleted", "fields": []}]})
        return results

    def collection(method: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any, int]:
        """Returns (status, body, records written)."""
        if data.write_delay:
            time.sleep(data.write_delay)
        if method == "DELETE":
            ids = [i for i in ",".join(query.get("ids", [])).split(",") if i]
            if len(ids) > 200:
                raise ApiFailure(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records")
            results = delete(ids)
            return 200, results, sum(1 for r in results if r["success"])
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ApiFailure(400, "JSON_PARSER_ERROR", "records is required")
        records = body["records"]
        if len(records) > 200:
            raise ApiFailure(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records")
        types = {str((r.get("attributes") or {}).get("type")) for r in records if isinstance(r, dict)}
        if len(types) > 10:
            raise ApiFailure(400, "INVALID_BATCH_REQUEST", "too many object types")
        all_or_none = bool(body.get("allOrNone", False))
        results = create(records, all_or_none) if method == "POST" else update(records)
        return 200, results, sum(1 for r in results if r["success"])

    def describe_global(version: str) -> dict[str, Any]:
        names = ["Account", "Contact", "Lead", "Task", "Event", "EventRelation", "EmailMessage", "User"]
        if data.enhanced_email:
            names.append("EmailMessageRelation")
        return {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
            {"name": n, "createable": True, "queryable": True, "urls": {"sobject": f"/services/data/v{version}/"
                                                                        f"sobjects/{n}"}} for n in names]}

    def describe(sobject: str) -> dict[str, Any]:
        base = {"Event": ["Id", "Subject", "StartDateTime", "EndDateTime", "IsAllDayEvent", "Location",
                          "Description", "WhoId", "WhatId", "OwnerId"],
                "Task": ["Id", "Subject", "Description", "WhoId", "TaskSubtype", "Status", "ActivityDate"],
                "EmailMessage": ["Id", "Subject", "TextBody", "MessageIdentifier", "FromAddress", "ToAddress"],
                "EmailMessageRelation": ["Id", "EmailMessageId", "RelationId", "RelationType", "RelationAddress"],
                "Contact": ["Id", "Email"], "Lead": ["Id", "Email", "IsConverted"]}
        if sobject not in base or (sobject == "EmailMessageRelation" and not data.enhanced_email):
            raise ApiFailure(404, "NOT_FOUND", "The requested resource does not exist")
        names = list(base[sobject])
        if sobject in ("Event", "Task") and data.key_field:
            names.append(data.key_field)
        return {"name": sobject, "createable": True, "fields": [
            {"name": n, "length": FIELD_LENGTHS.get(sobject, {}).get(n, 0), "externalId": n.endswith("__c")}
            for n in names]}

    def limits() -> dict[str, Any]:
        return {"DailyApiRequests": {"Max": data.api_max, "Remaining": max(0, data.api_max - data.api_used)}}

    # -- dispatch ---------------------------------------------------------------------------------
    resource = re.compile(r"^/services/data/v(?P<version>\d+\.\d+)/(?P<rest>.*)$")

    def dispatch(method: str, url: str, body: Any, call: RestCall) -> tuple[int, Any]:
        parts = urlsplit(url)
        match = resource.match(parts.path)
        if not match:
            raise ApiFailure(404, "NOT_FOUND", "The requested resource does not exist")
        version, rest = match.group("version"), match.group("rest").rstrip("/")
        query = parse_qs(parts.query, keep_blank_values=True)
        if rest in ("query", "queryAll") and method == "GET":
            soql = (query.get("q") or [""])[0]
            call.queries.append(soql)
            call.subrequests.append(("GET", "query"))
            return 200, run_query(soql, version)
        if rest.startswith("query/") and method == "GET":
            call.subrequests.append(("GET", "query"))
            return 200, query_more(rest.split("/", 1)[1], version)
        if rest == "composite/sobjects" and method in ("POST", "PATCH", "DELETE"):
            call.subrequests.append((method, "collection"))
            status, result, written = collection(method, query, body)
            call.records_written += written
            return status, result
        if rest == "sobjects" and method == "GET":
            call.subrequests.append(("GET", "describe"))
            return 200, describe_global(version)
        describe_match = re.match(r"^sobjects/(\w+)/describe$", rest)
        if describe_match and method == "GET":
            call.subrequests.append(("GET", "describe"))
            return 200, describe(describe_match.group(1))
        if rest == "limits" and method == "GET":
            call.subrequests.append(("GET", "limits"))
            return 200, limits()
        raise ApiFailure(404, "NOT_FOUND", f"no fake for {method} {rest}")

    ref_pattern = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")

    def resolve(value: Any, results: dict[str, Any]) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, results) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, results) for v in value]
        if not isinstance(value, str) or "@{" not in value:
            return value

        def lookup(match: re.Match[str]) -> str:
            current: Any = results.get(match.group(1), _MISSING)
            for step in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", match.group(2)):
                if current is _MISSING or current is None:
                    break
                name, index = step
                if name:
                    current = current.get(name, _MISSING) if isinstance(current, dict) else _MISSING
                else:
                    current = current[int(index)] if isinstance(current, list) and int(index) < len(current) \
                        else _MISSING
            if current is _MISSING or current is None:
                raise ApiFailure(400, "PROCESSING_HALTED", f"Invalid reference specification: {match.group(0)}")
            return str(current)

        return ref_pattern.sub(lookup, value)

    def composite(body: Any, call: RestCall) -> dict[str, Any]:
        subrequests = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subrequests, list) or not subrequests:
            raise ApiFailure(400, "INVALID_REQUEST", "compositeRequest is required")
        if len(subrequests) > 25:
            raise ApiFailure(400, "INVALID_REQUEST", "at most 25 subrequests")
        heavy = sum(1 for s in subrequests if re.search(r"/(query|queryAll|composite/sobjects)(\?|/|$)",
                                                         str(s.get("url", ""))))
        if heavy > 5:
            raise ApiFailure(400, "INVALID_REQUEST", "at most 5 query or sObject Collection subrequests")
        results: dict[str, Any] = {}
        responses = []
        for sub in subrequests:
            ref = str(sub.get("referenceId") or "")
            try:
                url = resolve(str(sub.get("url", "")), results)
                sub_body = resolve(sub.get("body"), results)
                status, result = dispatch(str(sub.get("method", "GET")), url, sub_body, call)
            except ApiFailure as exc:
                status, result = exc.status, exc.body
            results[ref] = result if status < 300 else None
            responses.append({"body": result, "httpHeaders": {}, "httpStatusCode": status, "referenceId": ref})
        return {"compositeResponse": responses}

    @app.route("/services/data/<path:rest>", methods=["GET", "POST", "PATCH", "DELETE"])
    def rest_api(rest: str) -> Response:
        path = request.path
        kind = "composite" if path.endswith("/composite") else ""
        call = RestCall(kind=kind, method=request.method, path=path)
        result: Any
        try:
            if state.user_for_bearer(request.headers.get("Authorization")) is None:
                raise ApiFailure(401, "INVALID_SESSION_ID", "Session expired or invalid")
            with data.lock:
                if data.limit_exceeded:
                    raise ApiFailure(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                if data.fail_unavailable > 0:
                    data.fail_unavailable -= 1
                    raise ApiFailure(503, "SERVER_UNAVAILABLE", "Server unavailable")
                data.api_used += 1
            body = request.get_json(silent=True) if request.data else None
            if kind == "composite" and data.fail_write_after is not None and _writes(body):
                with data.lock:
                    if data.fail_write_after == 0:
                        data.fail_write_after = None
                        raise ApiFailure(503, "SERVER_UNAVAILABLE", "Server unavailable")
                    data.fail_write_after -= 1
            if kind == "composite":
                if request.method != "POST":
                    raise ApiFailure(405, "METHOD_NOT_ALLOWED", "use POST")
                status, result = 200, composite(body, call)
            else:
                status, result = dispatch(request.method, request.full_path.rstrip("?"), body, call)
                call.kind = call.subrequests[0][1] if call.subrequests else "other"
                if call.kind == "query" and "/query/" in path:
                    call.kind = "query_more"
        except ApiFailure as exc:
            status, result = exc.status, exc.body
        call.status = status
        with data.lock:
            data.calls.append(call)
        resp = Response(json.dumps(result), status=status, mimetype="application/json")
        resp.headers["Sforce-Limit-Info"] = f"api-usage={data.api_used}/{data.api_max}"
        return resp


_MISSING = object()


def _writes(body: Any) -> bool:
    """True when a composite request body creates, changes or deletes records."""
    subs = body.get("compositeRequest") if isinstance(body, dict) else None
    return isinstance(subs, list) and any(
        isinstance(s, dict) and str(s.get("method", "GET")) != "GET" and "/composite/sobjects" in str(s.get("url", ""))
        for s in subs)
