"""Executing a write plan: Composite requests sent in order, each record's outcome counted.

A record Salesforce refuses for good (validation rule, field too long, deleted contact) comes back
as a :class:`~backend.connectors.crm.Rejected` with Salesforce's reason (quarantined by the engine);
one refused "not now" (a locked row, a busy server) is transient and retried by a later run; the
rest commit. Relation rows refused for a transient reason, or whose subrequest failed only because
it referenced a refused parent, are resent once with the ids their parents got.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from backend.connectors.crm import ApiLimitExceeded, Capabilities, Rejected, WritePlan, WriteResult, clip
from backend.connectors.salesforce.batches import (
    COLLECTION_MAX,
    COMPOSITE_MAX_HEAVY,
    Sub,
    Unit,
    chunks,
    pack_creates,
    pack_requests,
    relation_subs,
)
from backend.connectors.salesforce.client import SalesforceClient
from backend.connectors.salesforce.lookup import LookupUnit, empty_rows
from backend.connectors.salesforce.records import (
    CANCELLED_PREFIX,
    cancelled_subject,
    email_relation,
    email_unit,
    event_changes,
    event_relation,
    event_unit,
    event_update,
    joinable,
    sender_relation,
)
from backend.connectors.salesforce.soql import query_url

# Per-record error codes that mean "already there" (our key field is a unique external id).
_DUPLICATE_CODES = {"DUPLICATE_VALUE", "DUPLICATE_EXTERNAL_ID"}
_GONE_CODES = {"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"}
# Codes that say "not now" rather than "never": a record refused with one is retried, not quarantined
# (a colleague's run writing relations to the same Contact locks it for a moment, for example).
_TRANSIENT_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION", "REQUEST_RUNNING_TOO_LONG",
                    "QUERY_TIMEOUT"}


def safe_reason(error: dict[str, Any]) -> str:
    """Salesforce's reason for refusing a record, without any field value it may echo."""
    code = str(error.get("statusCode") or error.get("errorCode") or "ERROR")[:60]
    fields = ", ".join(str(f) for f in (error.get("fields") or [])[:5])
    message = str(error.get("message") or "")
    if code == "STRING_TOO_LONG" or "data value too large" in message:
        # Salesforce quotes the value that did not fit; that value is mail content.
        message = "a value is too long for its field"
    text = f"{code}: {message}" if message else code
    if fields:
        text += f" ({fields})"
    return clip(text, 300)


def write_plan(client: SalesforceClient, plan: WritePlan, caps: Capabilities,
               configured_key_field: str, ahead: list[LookupUnit] | None = None) -> tuple[WriteResult, list[Unit]]:
    """Write a plan in Composite requests of up to 5 collections of up to 200 records each.

    New records travel with their relation rows (:func:`pack_creates`); updates, deletes and
    relations of records that already exist fill the free collections; look-ups prepared for the
    next batch (``ahead``) fill the slots still free, so they cost no call of their own. Returns the
    result and the records that were to be created (so the lookup caches can learn what now exists).
    """
    result = WriteResult()
    units = _units(plan, caps, configured_key_field, result)
    groups, overflow = pack_creates(units)
    pending = pack_requests(groups, _standalone(plan, caps, result), overflow)
    _ride_along(pending, list(ahead or ()), client.path)
    while pending:
        group, pending = pending[0], pending[1:]
        retry = _send_group(client, group, result)
        pending = [list(part) for part in chunks(retry, COMPOSITE_MAX_HEAVY)] + pending
    return result, units


def _ride_along(requests: list[list[Sub]], ahead: list[LookupUnit], path: str) -> None:
    """Put whole look-up units into the free query slots of ``requests`` (a unit that does not fit waits)."""
    for group in requests:
        while ahead and len(ahead[0].queries) <= COMPOSITE_MAX_HEAVY - len(group):
            unit = ahead.pop(0)
            group.extend(Sub("GET", role="query", url=query_url(f"{path}/query", soql), unit=unit)
                         for _, soql in unit.queries)


def _read_along(client: SalesforceClient, answered: dict[int, tuple[LookupUnit, list[Any]]]) -> None:
    """Fill the caches from look-ups that rode along, each unit only when all its queries were answered."""
    for unit, bodies in answered.values():
        if len(bodies) != len(unit.queries) or any(b is None for b in bodies):
            continue  # asked again by the next lookup
        rows = empty_rows()
        for (kind, _), body in zip(unit.queries, bodies, strict=True):
            rows[kind].extend(client.all_records(body))
        unit.read(rows)


def _units(plan: WritePlan, caps: Capabilities, configured_key_field: str, result: WriteResult) -> list[Unit]:
    """The records to create; drafts the org cannot take (no key field) are refused with a setup reason."""
    units: list[Unit] = []
    for draft in plan.emails:
        unit = email_unit(draft, caps)
        if unit is None:
            result.rejected.append(Rejected(draft.key, "Task", "Enhanced Email is off and the Salesforce "
                                            f"field {configured_key_field} is missing on activities."))
            continue
        units.append(unit)
    key_field = caps.activity_key_field
    for event in plan.new_events:
        if not key_field:
            result.rejected.append(Rejected(event.key, "Event", f"The Salesforce field {configured_key_field} is "
                                            "missing on activities, so meetings cannot be deduplicated."))
            continue
        units.append(event_unit(event, key_field))
    return units


def _standalone(plan: WritePlan, caps: Capabilities, result: WriteResult) -> list[Sub]:
    """Updates, deletes and relations of records that already exist (no create to travel with)."""
    updates: list[tuple[str, str, dict[str, Any]]] = []  # (key, label, record)
    extra_relations: list[tuple[Unit, dict[str, Any]]] = []
    deletes: list[tuple[str, str, str]] = []  # (key, record id, label)
    new_who: dict[str, str] = {}
    leaving: dict[str, set[str]] = {}
    for removal in plan.removed_relations:
        gone = leaving[removal.event.id] = set(removal.person_ids)
        deletes.extend((removal.event.key, row, "unrelate") for person, row in removal.event.relation_rows
                       if person in gone and row)
        if removal.event.who_id in gone:
            new_who[removal.event.id] = removal.new_who_id
    for existing, changed in plan.changed_events:
        changes = event_changes(existing, changed)
        label = "update"
        if existing.id in new_who:
            # In the same record as the meeting's other changes: one PATCH per record and request.
            changes["WhoId"] = new_who.pop(existing.id) or None
            label = "update_who"
        if changes:
            updates.append((existing.key, label, event_update(existing.id, changes)))
        else:
            result.events_unchanged += 1
        missing = [p for p in dict.fromkeys(changed.people_ids) if p not in existing.related_ids]
        # Those leaving go before the relations are added (deletes precede them in the request).
        missing = joinable(set(existing.related_ids) - leaving.get(existing.id, set()), missing)
        if missing:
            holder = Unit(existing.key, "Event", {}, "event", relation_parent_field="EventId", id=existing.id)
            extra_relations.extend((holder, event_relation(p)) for p in missing)
    if caps.enhanced_email:
        for repair in plan.sender_repairs:
            holder = Unit(repair.draft.key, "EmailMessage", {}, "email",
                          relation_parent_field="EmailMessageId", id=repair.record_id, repair=True)
            for person_id, kind in repair.missing():
                row = sender_relation(repair.draft) if kind == "FromAddress" else email_relation(person_id, kind)
                extra_relations.append((holder, row))
    updates.extend((key, "who", event_update(event_id, {"WhoId": who or None}))
                   for event_id, who in new_who.items() for key in [_key_of(plan, event_id)])
    for existing, action in plan.cancelled_events:
        if action == "delete":
            deletes.append((existing.key, existing.id, "delete"))
        elif not existing.subject.startswith(CANCELLED_PREFIX):
            mark = event_update(existing.id, {"Subject": cancelled_subject(existing.subject)})
            updates.append((existing.key, "mark", mark))
        else:
            result.events_unchanged += 1
    standalone = [Sub("PATCH", records=[r for _, _, r in part], meta=[(k, label) for k, label, _ in part],
                      role="update") for part in chunks(updates, COLLECTION_MAX)]
    standalone += [Sub("DELETE", ids=[i for _, i, _ in part], meta=[(k, label) for k, _, label in part],
                       role="delete") for part in chunks(deletes, COLLECTION_MAX)]
    return standalone + relation_subs(extra_relations)


def _key_of(plan: WritePlan, event_id: str) -> str:
    """The key of the meeting ``event_id`` a relation removal names."""
    return next((r.event.key for r in plan.removed_relations if r.event.id == event_id), "")


def _subrequest(sub: Sub, path: str, in_group: set[int]) -> dict[str, Any]:
    """The Composite subrequest for ``sub`` (relation rows get their parents' ids or references first)."""
    collection = f"{path}/composite/sobjects"
    if sub.role == "query":
        return {"method": "GET", "url": sub.url, "referenceId": sub.ref}
    if sub.role == "delete":
        query = urlencode({"ids": ",".join(sub.ids), "allOrNone": "false"})
        return {"method": "DELETE", "url": f"{collection}?{query}", "referenceId": sub.ref}
    if sub.role == "relation":
        records, kept = [], []
        sub.referenced = False
        for unit, template in sub.relations:
            create = unit.create
            if unit.id:
                ref = unit.id
            elif create is not None and id(create) in in_group and not unit.failed:
                ref = f"@{{{create.ref}[{create.position(unit)}].id}}"
                sub.referenced = True
            else:
                continue  # the parent record was refused: nothing to relate
            records.append({**template, unit.relation_parent_field: ref})
            kept.append((unit, template))
        sub.relations = kept
        sub.records = records
    if not sub.records:
        # Nothing left to send; a cheap GET keeps the referenceIds of the request in place.
        sub.role = "noop"
        return {"method": "GET", "url": f"{path}/limits", "referenceId": sub.ref}
    return {"method": sub.method, "url": collection, "referenceId": sub.ref,
            "body": {"allOrNone": False, "records": sub.records}}


def _send_group(client: SalesforceClient, group: list[Sub], result: WriteResult) -> list[Sub]:
    """Send one Composite request; returns relation subrequests to resend with resolved ids."""
    in_group = {id(s) for s in group}
    body: list[dict[str, Any]] = []
    for index, sub in enumerate(group):
        sub.ref = f"c{index}"
        body.append(_subrequest(sub, client.path, in_group))
    if all(s.role == "noop" for s in group):
        return []
    # Writes of 1,000 records can take a while on a busy org; reads use the default timeout.
    responses = client.composite(body, timeout=float(client.settings.SALESFORCE_WRITE_TIMEOUT_SECONDS))
    by_ref = {r.get("referenceId"): r for r in responses}
    resend: list[Sub] = []
    answered: dict[int, tuple[LookupUnit, list[Any]]] = {}
    for sub in group:
        if sub.role == "noop":
            continue
        response = by_ref.get(sub.ref) or {}
        status = int(response.get("httpStatusCode") or 0)
        items = response.get("body")
        if sub.role == "query":
            ok = status < 300 and isinstance(items, dict)
            answered.setdefault(id(sub.unit), (sub.unit, []))[1].append(items if ok else None)
            continue
        if status >= 300 or not isinstance(items, list) or len(items) != max(len(sub.records), len(sub.ids)):
            code = ""
            if isinstance(items, list) and items and isinstance(items[0], dict):
                code = str(items[0].get("errorCode") or "")
            if code == "REQUEST_LIMIT_EXCEEDED":
                raise ApiLimitExceeded()
            transient = code in _TRANSIENT_CODES or status >= 500 or status == 0
            if sub.role == "relation" and (sub.referenced or (transient and not sub.retried)):
                # A reference to a refused parent fails the whole subrequest: resend the rest once,
                # with the ids their parents got (no references, so it cannot fail that way again).
                # A transient refusal is resent once too.
                again = Sub("POST", relations=[(u, t) for u, t in sub.relations if u.id], role="relation",
                            retried=sub.retried or transient)
                if again.relations:
                    resend.append(again)
                continue
            _whole_failure(sub, code or str(status), result, transient)
            continue
        again_rows = _record_results(sub, items, result)
        if again_rows:
            resend.append(Sub("POST", relations=again_rows, role="relation", retried=True))
    _read_along(client, answered)
    return resend


def _whole_failure(sub: Sub, code: str, result: WriteResult, transient: bool) -> None:
    """Every record of a subrequest Salesforce refused as a whole: transient or rejected."""
    if transient:
        reason = f"{code}: Salesforce could not save the request just now"
        refused = result.transient
    else:
        reason = f"{code}: Salesforce refused the whole request"
        refused = result.rejected
    refused.extend(sub.refused(index, reason) for index in range(sub.record_count()))


def _record_results(sub: Sub, items: list[Any], result: WriteResult) -> list[tuple[Unit, dict[str, Any]]]:
    """Count each record's outcome; returns relation rows refused for a transient reason, to resend once."""
    again: list[tuple[Unit, dict[str, Any]]] = []
    for index, item in enumerate(items):
        item = item if isinstance(item, dict) else {}
        ok = bool(item.get("success"))
        errors = [e for e in item.get("errors") or [] if isinstance(e, dict)]
        codes = {str(e.get("statusCode") or "") for e in errors}
        reason = safe_reason(errors[0]) if errors else "Salesforce refused the record"
        if not ok and codes & _TRANSIENT_CODES and not codes & _DUPLICATE_CODES:
            if sub.role == "relation" and not sub.retried:
                again.append(sub.relations[index])
            else:
                result.transient.append(sub.refused(index, reason))
            continue
        if sub.role == "create":
            unit = sub.units[index]
            if ok:
                unit.id = str(item.get("id") or "")
                result.written_keys.add(unit.key)
                result.written_ids[unit.key] = unit.id
                if unit.kind == "email":
                    result.emails_written += 1
                else:
                    result.events_written += 1
            elif codes & _DUPLICATE_CODES:
                # Written meanwhile by a colleague's run: already logged, nothing lost.
                unit.failed = True
                result.duplicates += 1
                result.written_keys.add(unit.key)
            else:
                result.rejected.append(sub.refused(index, reason))
        elif sub.role == "relation":
            unit = sub.relations[index][0]
            if ok:
                result.relations_written += 1
                if unit.repair:
                    result.relations_repaired += 1
            elif not codes & _DUPLICATE_CODES:
                result.rejected.append(sub.refused(index, reason))
        elif sub.role == "update":
            label = sub.meta[index][1]
            if ok:
                if label == "mark":
                    result.events_marked += 1
                elif label == "who":
                    result.relations_removed += 1
                elif label == "update_who":
                    result.events_updated += 1
                    result.relations_removed += 1
                else:
                    result.events_updated += 1
            else:
                result.rejected.append(sub.refused(index, reason))
        elif sub.role == "delete":
            if (ok or codes & _GONE_CODES) and sub.meta[index][1] == "unrelate":
                result.relations_removed += 1
            elif ok or codes & _GONE_CODES:
                result.events_deleted += 1
            else:
                result.rejected.append(sub.refused(index, reason))
    return again
