"""The fake Salesforce's fast paths answer as its plain definitions do (SOQL filters, child rows, writes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sandbox.salesforce_rest import SalesforceData, parse_soql
from sandbox.salesforce_rest.queries import children_by_parent, project, run_query
from sandbox.salesforce_rest.records import _stored_datetime, create, update, validate
from sandbox.salesforce_rest.soql import matches, matching


class Text(str):
    """A str subclass: the fast filters must treat it as the plain definition does."""


VALUES: list[Any] = ["a@x.example", "A@X.EXAMPLE", "b@x.example", "", None, True, False, 0, 1, 1.0, Text("a@x.example"),
                     ["a@x.example"], {"k": 1}]
STATEMENTS = [
    "SELECT Id FROM Contact WHERE Email IN ('a@x.example', 'c@x.example')",
    "SELECT Id FROM Contact WHERE Email IN ('a@x.example', true)",
    "SELECT Id FROM Contact WHERE Email IN (1, null)",
    "SELECT Id FROM Contact WHERE Email = 'A@x.example'",
    "SELECT Id FROM Contact WHERE Email = ''",
    "SELECT Id FROM Contact WHERE Email = false",
    "SELECT Id FROM Contact WHERE Email = null",
    "SELECT Id FROM Contact WHERE Email != 'a@x.example'",
    "SELECT Id FROM Contact WHERE Email IN ('b@x.example', 'a@x.example') AND Flag = true",
    "SELECT Id FROM Contact",
]


@pytest.mark.parametrize("soql", STATEMENTS)
def test_matching_selects_what_matches_selects(soql: str) -> None:
    """Every kind of value against every kind of condition: the same rows, in table order."""
    table = [{"Id": f"003{i:015d}", "Email": v, "Flag": i % 2 == 0} for i, v in enumerate(VALUES)]
    table += [{"Id": "003-missing"}]
    conditions = parse_soql(soql).conditions
    assert matching(table, conditions) == [r for r in table if matches(r, conditions)]


def test_child_rows_grouped_once_are_the_rows_a_scan_finds() -> None:
    """A parent's child subquery rows, from the grouping, equal the per-row scan's (order, filter)."""
    data = SalesforceData()
    parents = [data.insert("EmailMessage", MessageIdentifier=f"<m{i}@x>") for i in range(4)]
    for i in range(12):
        data.insert("EmailMessageRelation", EmailMessageId=parents[i % 3], RelationId=f"003{i}",
                    RelationType="ToAddress" if i % 2 else "FromAddress")
    data.insert("EmailMessageRelation", EmailMessageId=["unhashable"], RelationId="x", RelationType="ToAddress")
    query = parse_soql("SELECT Id, (SELECT Id, RelationId FROM EmailMessageRelations WHERE RelationType = "
                       "'ToAddress') FROM EmailMessage")
    groups = children_by_parent(data, query, "EmailMessage")
    for rid in parents:
        record = data.records["EmailMessage"][rid]
        assert project(data, record, query, "EmailMessage", "62.0", groups) == \
            project(data, record, query, "EmailMessage", "62.0")
    assert run_query(data, "SELECT Id, (SELECT Id FROM EmailMessageRelations) FROM EmailMessage", "62.0")[
        "records"][3]["EmailMessageRelations"] is None


@pytest.mark.parametrize("text", ["2026-12-06T21:03:26.000+0000", "2026-12-06T21:03:26Z", "2026-12-06T22:03:26+01:00",
                                  "2026-12-06T21:03:26.123+0000", "0999-01-01T00:00:00.000+0000"])
def test_stored_datetime_is_the_full_conversion(text: str) -> None:
    """Already in the stored form or not, a date-time is stored as the parse-and-format makes it."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("+0000", "+00:00"))
    assert _stored_datetime(text) == parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def test_stored_datetime_still_refuses_an_impossible_date() -> None:
    """The stored form's shortcut does not store a date that cannot be."""
    with pytest.raises(ValueError):
        _stored_datetime("2026-13-06T21:03:26.000+0000")


def test_write_checks_in_their_order() -> None:
    """Length in UTF-16 units (the key field 255), bad characters, references to users, records, the deleted."""
    data = SalesforceData()
    data.user_ids = lambda: {"005USER"}
    contact = data.insert("Contact", Email="c@x.example")
    gone = data.insert("Contact", Email="d@x.example")
    data.delete(gone)
    assert validate(data, "Task", {"Sidebar_Sync_Key__c": "k" * 255}, creating=True) is None
    assert validate(data, "Task", {"Sidebar_Sync_Key__c": "k" * 256}, creating=True)["statusCode"] == "STRING_TOO_LONG"
    assert validate(data, "Task", {"Other__c": "x"}, creating=True)["message"] == "No such column 'Other__c'"
    assert validate(data, "Task", {"Subject": "\U0001f600" * 128}, creating=True)["statusCode"] == "STRING_TOO_LONG"
    assert validate(data, "Task", {"Subject": "\U0001f600" * 127}, creating=True) is None
    assert validate(data, "Task", {"Status": "a\ud800"}, creating=True)["message"] == "invalid characters"
    assert validate(data, "Task", {"Subject": "a\x00"}, creating=True)["message"] == "invalid characters"
    for users in (None, {"005USER"}):
        assert validate(data, "Task", {"WhoId": "005USER"}, creating=True, users=users) is None
        assert validate(data, "Task", {"WhoId": contact}, creating=True, users=users) is None
        assert validate(data, "Task", {"WhoId": gone}, creating=True, users=users)["statusCode"] == "ENTITY_IS_DELETED"
        assert validate(data, "EmailMessage", {"ToIds": ["005USER", "003NONE"]}, creating=True, users=users)[
            "statusCode"] == "INVALID_CROSS_REFERENCE_KEY"


def test_created_records_keep_their_fields_in_order() -> None:
    """A created record: its id first, its fields as written (junction lists out), then what Salesforce adds."""
    data = SalesforceData()
    data.user_ids = lambda: {"005U"}
    results = create(data, [{"attributes": {"type": "EmailMessage"}, "Subject": "s", "ToIds": ["005U"],
                             "MessageDate": "2026-12-06T22:00:00+01:00", "Status": "1"}], all_or_none=False)
    rid = results[0]["id"]
    assert list(results[0]) == ["success", "errors", "id"]
    stored = data.records["EmailMessage"][rid]
    assert list(stored) == ["Id", "Subject", "MessageDate", "Status", "CreatedDate"]
    assert stored["MessageDate"] == "2026-12-06T21:00:00.000+0000"
    relation = next(iter(data.records["EmailMessageRelation"].values()))
    assert relation == {"Id": relation["Id"], "EmailMessageId": rid, "RelationId": "005U", "RelationType": "ToAddress"}


def _relation(event_id: str, person_id: str) -> dict[str, Any]:
    """A parent EventRelation row, as the connector sends it."""
    return {"attributes": {"type": "EventRelation"}, "EventId": event_id, "RelationId": person_id,
            "IsParent": True, "IsWhat": False, "IsInvitee": False}


@pytest.mark.parametrize(("who", "others", "refused"), [
    ("contact", ["lead"], [True]),  # a lead beside a contact
    ("lead", ["contact"], [True]),  # a contact beside a lead
    ("lead", ["lead"], [True]),  # two leads
    ("contact", ["contact"] * 50, [False] * 49 + [True]),  # the 51st contact
    ("contact", ["contact"] * 3, [False] * 3),  # contacts only
], ids=["contact+lead", "lead+contact", "two-leads", "51-contacts", "contacts-only"])
def test_an_event_is_related_to_up_to_50_contacts_or_one_lead(who: str, others: list[str],
                                                              refused: list[bool]) -> None:
    """Shared Activities' rule, relation by relation, in one request as across requests."""
    data = SalesforceData()
    new = {"contact": lambda: data.add_contact("c@x.example"), "lead": lambda: data.add_lead("l@x.example")}
    event = data.insert("Event", Subject="Review", WhoId=new[who]())
    people = [new[kind]() for kind in others]
    half = len(people) // 2
    results = create(data, [_relation(event, p) for p in people[:half]], all_or_none=False)
    results += create(data, [_relation(event, p) for p in people[half:]], all_or_none=False)
    assert [not r["success"] for r in results] == refused
    for result in results:
        if not result["success"]:
            assert result["errors"] == [{"statusCode": "FIELD_INTEGRITY_EXCEPTION", "fields": ["RelationId"],
                                         "message": "An event can be related to up to 50 contacts or one lead"}]


def test_an_event_with_contacts_cannot_take_a_lead_as_its_who() -> None:
    """A WhoId replaces the one before, beside the event's relation rows."""
    data = SalesforceData()
    event = data.insert("Event", Subject="Review", WhoId=data.add_contact("a@x.example"))
    create(data, [_relation(event, data.add_contact("b@x.example"))], all_or_none=False)
    lead = data.add_lead("l@x.example")
    (result,) = update(data, [{"attributes": {"type": "Event"}, "Id": event, "WhoId": lead}])
    assert not result["success"] and result["errors"][0]["fields"] == ["WhoId"]
    other = data.add_contact("c@x.example")
    assert update(data, [{"attributes": {"type": "Event"}, "Id": event, "WhoId": other}])[0]["success"]
    data.event_people_rule = False  # the knob a packing test turns
    assert update(data, [{"attributes": {"type": "Event"}, "Id": event, "WhoId": lead}])[0]["success"]
