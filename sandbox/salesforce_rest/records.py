"""The write side of the fake Salesforce REST API: sObject Collections create, update and delete, validated."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sandbox.salesforce_rest.data import (
    DATETIME_FIELDS,
    FIELD_LENGTHS,
    ID_PREFIX,
    JUNCTION_TYPES,
    REFERENCE_FIELDS,
    ApiFailure,
    SalesforceData,
)


def reference_error(data: SalesforceData, name: str, value: Any,
                    users: set[str] | None = None) -> dict[str, Any] | None:
    """The error for a reference field naming a deleted or unknown record, or None (``users``: the
    user ids, when the caller read them once for many records)."""
    ids = value if isinstance(value, list) else [value]
    for rid in ids:
        if not rid:
            continue
        rid = str(rid)
        if rid in data.deleted_ids:
            return {"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": [name]}
        if not _exists(data, rid, users):
            return {"statusCode": "INVALID_CROSS_REFERENCE_KEY",
                    "message": "invalid cross reference id", "fields": [name]}
    return None


def _exists(data: SalesforceData, rid: str, users: set[str] | None) -> bool:
    """Whether ``rid`` names a record or a user (the users' set is built only when needed)."""
    if users is not None and rid in users:
        return True
    for table in data.records.values():
        if rid in table:
            return True
    return users is None and rid in data.user_ids()


# What a write checks once per call, not per record: compiled once, looked up once per sObject.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NO_LENGTHS: dict[str, int] = {}
_STORED_FORM = re.compile(r"[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000")
_PLANS: dict[tuple[str, str | None], dict[str, tuple[int | None, bool] | None]] = {}
_UNSEEN: Any = object()
_SUBTYPES = frozenset(("Email", "Task", "Call", "ListEmail", "Cadence", "LinkedIn"))


def _field_plan(sobject: str, key_field: str | None) -> dict[str, tuple[int | None, bool] | None]:
    """The fields of ``sobject`` met so far and what a write checks of each (see :func:`_field_meta`)."""
    plan = _PLANS.get((sobject, key_field))
    if plan is None:
        plan = _PLANS[(sobject, key_field)] = {}
    return plan


def _field_meta(sobject: str, key_field: str | None, name: str) -> tuple[int | None, bool] | None:
    """A field's (length limit, is a reference), or None for a custom field the org lacks."""
    if name == key_field:
        return 255, name in REFERENCE_FIELDS
    if name.endswith("__c"):
        return None
    return FIELD_LENGTHS.get(sobject, _NO_LENGTHS).get(name), name in REFERENCE_FIELDS


def validate(data: SalesforceData, sobject: str, record: dict[str, Any], creating: bool,
             users: set[str] | None = None) -> dict[str, Any] | None:
    """The first error a record write would meet (field, length, reference, rule, duplicate), or None
    (``users``: as :func:`reference_error` takes them)."""
    if sobject == "EmailMessageRelation" and not data.enhanced_email:
        return {"statusCode": "INVALID_TYPE", "message": "sObject type not supported", "fields": []}
    if sobject == "Task" and creating and "TaskSubtype" in record and record["TaskSubtype"] not in _SUBTYPES:
        return {"statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "message": "bad value", "fields": []}
    plan = _field_plan(sobject, data.key_field)
    for name, value in record.items():
        meta = plan.get(name, _UNSEEN)
        if meta is _UNSEEN:
            meta = plan[name] = _field_meta(sobject, data.key_field, name)
        if meta is None:
            return {"statusCode": "INVALID_FIELD", "message": f"No such column '{name}'", "fields": [name]}
        limit, reference = meta
        if isinstance(value, str):
            # Salesforce measures Java strings: UTF-16 code units, so an emoji counts twice (ASCII: one a character).
            if limit is not None and (len(value) if value.isascii() else len(value.encode("utf-16-le")) // 2) > limit:
                # Salesforce quotes the value that did not fit, as here.
                return {"statusCode": "STRING_TOO_LONG",
                        "message": f"{name}: data value too large: {value[:300]} (max length={limit})",
                        "fields": [name]}
            if reference and value and (error := reference_error(data, name, value, users)):
                return error
            if "\x00" in value or (not value.isascii() and _SURROGATE.search(value)):
                return {"statusCode": "INVALID_FIELD", "message": "invalid characters", "fields": [name]}
        elif reference and value and (error := reference_error(data, name, value, users)):
            return error
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


# Shared Activities: "an event can be related to up to 50 contacts or one lead" (EventRelation,
# object reference). Salesforce documents the rule, not its error; the code and message here are
# the shape of its other integrity refusals.
MAX_EVENT_CONTACTS = 50
_WHO_REFUSAL = {"statusCode": "FIELD_INTEGRITY_EXCEPTION",
                "message": "An event can be related to up to 50 contacts or one lead", "fields": ["RelationId"]}


def event_whos(data: SalesforceData) -> dict[str, set[str]]:
    """Each event's related people (its parent EventRelation rows; WhoId is read from the event)."""
    whos: dict[str, set[str]] = {}
    for row in data.records.get("EventRelation", {}).values():
        if row.get("IsParent") and not row.get("IsWhat") and row.get("EventId"):
            whos.setdefault(str(row["EventId"]), set()).add(str(row.get("RelationId") or ""))
    return whos


def who_error(data: SalesforceData, sobject: str, record: dict[str, Any],
              whos: dict[str, set[str]]) -> dict[str, Any] | None:
    """The refusal of a relation or WhoId that would relate an event to a lead and others, two
    leads or 51 contacts, or None (``whos``: :func:`event_whos`, kept up to date by the caller)."""
    if not data.event_people_rule:
        return None
    if sobject == "EventRelation" and record.get("IsParent") and not record.get("IsWhat"):
        event = data.records.get("Event", {}).get(str(record.get("EventId") or ""))
        if event is None:
            return None
        people = whos.get(event["Id"], set()) | {str(event.get("WhoId") or ""), str(record.get("RelationId") or "")}
    elif sobject == "Event" and "WhoId" in record and record.get("Id"):
        # A new WhoId replaces the old one; the relation rows stay.
        people = whos.get(str(record["Id"]), set()) | {str(record.get("WhoId") or "")}
    else:
        return None
    leads = sum(1 for p in people if p.startswith(ID_PREFIX["Lead"]))
    contacts = sum(1 for p in people if p.startswith(ID_PREFIX["Contact"]))
    if leads > 1 or (leads and contacts) or contacts > MAX_EVENT_CONTACTS:
        return dict(_WHO_REFUSAL, fields=["RelationId" if sobject == "EventRelation" else "WhoId"])
    return None


def normalise(record: dict[str, Any]) -> dict[str, Any]:
    """Date-times in the form Salesforce stores them (``record`` itself when it holds none)."""
    if DATETIME_FIELDS.isdisjoint(record):  # most records carry none: one set operation, not a test a field
        return record
    out = dict(record)
    for name, value in record.items():
        if name in DATETIME_FIELDS and isinstance(value, str):
            out[name] = _stored_datetime(value)
    return out


def _stored_datetime(value: str) -> str:
    """A date-time as Salesforce stores it (in UTC, milliseconds, ``+0000``)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("+0000", "+00:00"))
    if _STORED_FORM.fullmatch(value):  # already so (what the engine sends): parsed above only to refuse a bad one
        return value
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def derive_activity_date(data: SalesforceData, sobject: str, record: dict[str, Any], given: dict[str, Any]) -> None:
    """An Event's ActivityDate as Salesforce fills it: the one written, else the date of
    StartDateTime in the user's time zone (what puts an all-day event on the wrong day when a
    client sends only a midnight-UTC StartDateTime)."""
    if sobject != "Event" or "ActivityDate" in given or not record.get("StartDateTime"):
        return
    start = datetime.fromisoformat(str(record["StartDateTime"]).replace("+0000", "+00:00"))
    record["ActivityDate"] = start.astimezone(ZoneInfo(data.user_timezone)).date().isoformat()


def _type_of(record: Any) -> str:
    """A record's ``attributes.type`` ("" when it has none)."""
    return str((record.get("attributes") or {}).get("type") or "") if isinstance(record, dict) else ""


def create(data: SalesforceData, records: list[dict[str, Any]], all_or_none: bool) -> list[dict[str, Any]]:
    """Insert records (sObject Collections POST), all or none when asked."""
    results: list[dict[str, Any]] = []
    creator = getattr(data.acting, "user_id", "")
    tables = data.records
    # One request is one transaction: its records share the time they were created at.
    created = datetime.now(tz=UTC).isoformat()
    users = data.user_ids()  # once a request, not once a reference
    with data.lock:
        # Built once a request, and only for one that relates people to events.
        whos = event_whos(data) if any(_type_of(r) == "EventRelation" for r in records) else {}
        staged: list[tuple[str, dict[str, Any]] | None] = []
        for record in records:
            sobject = str((record.get("attributes") or {}).get("type") or "")
            fields = dict(record)
            fields.pop("attributes", None)
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
            error = validate(data, sobject, fields, creating=True, users=users) or who_error(
                data, sobject, fields, whos)
            if error:
                results.append({"success": False, "errors": [error]})
                staged.append(None)
                continue
            staged.append((sobject, fields))
            # Visible to the duplicate check of later records in the same request.
            rid = data.new_id(sobject)
            results.append({"success": True, "errors": [], "id": rid})
            stored = {"Id": rid, **fields}
            for junction in JUNCTION_TYPES:
                stored.pop(junction, None)
            stored = normalise(stored)
            stored["CreatedDate"] = created
            if creator:
                stored["CreatedById"] = creator
                stored.setdefault("OwnerId", creator)
            table = tables.get(sobject)
            if table is None:
                table = tables[sobject] = {}
            table[rid] = stored
            if sobject == "EventRelation" and fields.get("IsParent") and not fields.get("IsWhat"):
                whos.setdefault(str(fields.get("EventId")), set()).add(str(fields.get("RelationId") or ""))
            derive_activity_date(data, sobject, stored, fields)
            if sobject == "EmailMessage":
                for junction, relation_type in JUNCTION_TYPES.items():
                    for rel in fields.get(junction) or []:
                        rel_id = data.new_id("EmailMessageRelation")
                        tables.setdefault("EmailMessageRelation", {})[rel_id] = {
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


def update(data: SalesforceData, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Update records (sObject Collections PATCH)."""
    results: list[dict[str, Any]] = []
    users = data.user_ids()
    with data.lock:
        whos = event_whos(data) if any(_type_of(r) == "Event" and "WhoId" in r for r in records) else {}
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
            error = validate(data, sobject, {**fields, "Id": rid}, creating=False, users=users) or who_error(
                data, sobject, {**fields, "Id": rid}, whos)
            if error:
                results.append({"id": rid, "success": False, "errors": [error]})
                continue
            current.update(normalise(fields))
            if "StartDateTime" in fields:
                derive_activity_date(data, sobject, current, fields)
            results.append({"id": rid, "success": True, "errors": []})
    return results


def delete(data: SalesforceData, ids: list[str]) -> list[dict[str, Any]]:
    """Delete records by id (sObject Collections DELETE)."""
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


def collection(data: SalesforceData, method: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any, int]:
    """Returns (status, body, records written)."""
    if data.write_delay:
        time.sleep(data.write_delay)
    if method == "DELETE":
        ids = [i for i in ",".join(query.get("ids", [])).split(",") if i]
        if len(ids) > 200:
            raise ApiFailure(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records")
        results = delete(data, ids)
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
    results = create(data, records, all_or_none) if method == "POST" else update(data, records)
    return 200, results, sum(1 for r in results if r["success"])
