"""The read side of the fake Salesforce REST API: SOQL queries with paging, describes, limits."""

from __future__ import annotations

from typing import Any

from sandbox.salesforce_rest.data import CHILD_RELATIONSHIPS, FIELD_LENGTHS, ApiFailure, SalesforceData
from sandbox.salesforce_rest.soql import Query, SoqlError, matches, matching, parsed


def attributes(sobject: str, rid: str, version: str) -> dict[str, str]:
    """The ``attributes`` of a record as the API returns it."""
    return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{rid}"}


def project(data: SalesforceData, record: dict[str, Any], query: Query, sobject: str, version: str,
            children: dict[str, dict[Any, list[dict[str, Any]]]] | None = None) -> dict[str, Any]:
    """One result row: the selected fields and child relationship subqueries (``children``: their
    records by parent id, as :func:`children_by_parent` groups them, instead of a scan a row)."""
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
        candidates = data.records.get(child_type, {}).values() if children is None \
            else children[child.child_name].get(record["Id"], [])
        rows = [
            {"attributes": attributes(child_type, r["Id"], version), **{f: r.get(f) for f in child.fields}}
            for r in candidates
            if r.get(parent_field) == record["Id"] and matches(r, child.conditions)
        ]
        row[child.child_name] = {"totalSize": len(rows), "done": True, "records": rows} if rows else None
    return row


def run_query(data: SalesforceData, soql: str, version: str) -> dict[str, Any]:
    """Run a SOQL query (its first page)."""
    try:
        query = parsed(soql)
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
        elif sobject == "User":
            table = data.user_rows()  # type: ignore[assignment]
        rows = matching(table, query.conditions)
        if query.order_by:
            rows.sort(key=lambda r: str(r.get(query.order_by or "") or ""), reverse=query.descending)
        if query.limit is not None:
            rows = rows[: query.limit]
        try:
            children = children_by_parent(data, query, sobject) if rows and query.children else None
            projected = [project(data, r, query, sobject, version, children) for r in rows]
        except SoqlError as exc:
            raise ApiFailure(400, "INVALID_TYPE", str(exc)) from None
    return page(data, projected, version)


def children_by_parent(data: SalesforceData, query: Query, sobject: str) -> dict[str, dict[Any, list[dict[str, Any]]]]:
    """Each child subquery's records by parent id, in table order: one pass over a child table, not one a row."""
    groups: dict[str, dict[Any, list[dict[str, Any]]]] = {}
    for child in query.children:
        key = (sobject, child.child_name)
        if key not in CHILD_RELATIONSHIPS:
            raise SoqlError(f"unknown relationship {child.child_name}")
        child_type, parent_field = CHILD_RELATIONSHIPS[key]
        by_parent: dict[Any, list[dict[str, Any]]] = {}
        for r in data.records.get(child_type, {}).values():
            try:
                by_parent.setdefault(r.get(parent_field), []).append(r)
            except TypeError:  # unhashable: equal to no record's Id
                continue
        groups[child.child_name] = by_parent
    return groups


def page(data: SalesforceData, rows: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """The first page of ``rows``; the rest is kept behind a ``nextRecordsUrl`` locator."""
    size = data.query_page_size
    first, rest = rows[:size], rows[size:]
    body: dict[str, Any] = {"totalSize": len(rows), "done": not rest, "records": first}
    if rest:
        locator = f"01g{next(data._ids):012d}-{size}"
        data._cursors[locator] = rest
        body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}"
    return body


def query_more(data: SalesforceData, locator: str, version: str) -> dict[str, Any]:
    """The next page behind a query locator."""
    rest = data._cursors.pop(locator, None)
    if rest is None:
        raise ApiFailure(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    body = page(data, rest, version)
    body["totalSize"] = len(rest)
    return body


def describe_global(data: SalesforceData, version: str) -> dict[str, Any]:
    """The global describe (the sObjects this org has)."""
    names = ["Account", "Contact", "Lead", "Task", "Event", "EventRelation", "EmailMessage", "User"]
    if data.enhanced_email:
        names.append("EmailMessageRelation")
    return {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
        {"name": n, "createable": True, "queryable": True, "urls": {"sobject": f"/services/data/v{version}/"
                                                                    f"sobjects/{n}"}} for n in names]}


def describe(data: SalesforceData, sobject: str) -> dict[str, Any]:
    """The describe of one sObject (its fields and lengths)."""
    base = {"Event": ["Id", "Subject", "StartDateTime", "EndDateTime", "IsAllDayEvent", "ActivityDate", "Location",
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


def limits(data: SalesforceData) -> dict[str, Any]:
    """The org limits (daily API requests)."""
    return {"DailyApiRequests": {"Max": data.api_max, "Remaining": max(0, data.api_max - data.api_used)}}
