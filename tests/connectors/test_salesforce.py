"""The Salesforce connector against the wire-level fake: real simple-salesforce, exact call counts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.connectors.crm import (
    ApiLimitExceeded,
    ApiUsage,
    EmailDraft,
    EventDraft,
    PersonKind,
    SenderRepair,
    WritePlan,
)
from backend.connectors.salesforce import records
from backend.connectors.salesforce.batches import COLLECTION_MAX
from backend.connectors.salesforce.soql import URI_MAX_CHARS
from backend.errors import AuthRevoked, Unavailable
from sandbox.salesforce_rest import Rule
from tests.sfhelpers import SalesforceUser, log_in


@pytest.fixture
def sf(app: Flask, client: FlaskClient, ca: Any, fake_salesforce: Any) -> Iterator[SalesforceUser]:
    """Alice logged in; the app context pushed; the fake's call record emptied."""
    user = log_in(app, client, ca.ca_path, fake_salesforce)
    with app.app_context():
        user.data.reset_calls()
        yield user


def email(key: str, to_ids: list[str] | None = None, from_id: str = "", subject: str = "Hello",
          body: str = "Body", **kwargs: Any) -> EmailDraft:
    """An email draft with sensible defaults."""
    people = [i for i in [from_id, *(to_ids or [])] if i and not i.startswith("005")]
    return EmailDraft(key=key, subject=subject, body=body, from_address="bob@customer.example", from_name="Bob",
                      to_addresses=["x@other.example"], cc_addresses=[],
                      message_date=datetime(2026, 11, 20, tzinfo=UTC), outgoing=False, to_ids=to_ids or [],
                      from_id=from_id, people_ids=people, **kwargs)


def event(key: str, people: list[str], subject: str = "Meeting", hours: float = 1.0) -> EventDraft:
    """An event draft."""
    start = datetime(2026, 11, 20, 10, tzinfo=UTC)
    return EventDraft(key=key, subject=subject, body="Agenda", location="Room 1", start=start,
                      end=start + timedelta(hours=hours), is_all_day=False, people_ids=people)


# --- matching ------------------------------------------------------------------------------------

def test_match_is_case_insensitive_contacts_win_and_converted_leads_are_ignored(sf: SalesforceUser) -> None:
    contact = sf.data.add_contact("Bob@Customer.example")
    sf.data.add_lead("bob@customer.example")  # same person as a lead: the contact wins
    lead = sf.data.add_lead("carol@prospect.example")
    sf.data.add_lead("dave@old.example", converted=True)
    idn = sf.data.add_contact("josé@xn--exmple-cua.com")
    crm = sf.crm()
    people = crm.match(["BOB@customer.EXAMPLE", "carol@prospect.example", "dave@old.example",
                        "josé@exämple.com", "nobody@nowhere.example"])
    assert people["bob@customer.example"].id == contact
    assert people["bob@customer.example"].kind is PersonKind.CONTACT
    assert people["carol@prospect.example"].kind is PersonKind.LEAD and people["carol@prospect.example"].id == lead
    assert people["josé@exämple.com"].id == idn
    assert "dave@old.example" not in people and "nobody@nowhere.example" not in people
    # Contacts and Leads in one Composite request: one API call.
    assert crm.calls == 1
    assert [c.subrequests for c in sf.data.calls] == [[("GET", "query"), ("GET", "query")]]


def test_lookup_caches_per_run(sf: SalesforceUser) -> None:
    sf.data.add_contact("bob@customer.example")
    crm = sf.crm()
    crm.lookup(["bob@customer.example", "x@y.example"], ["<m1@x>"], [])
    calls = crm.calls
    crm.lookup(["bob@customer.example", "x@y.example"], ["<m1@x>"], [])
    assert crm.calls == calls  # asked once per run
    crm.lookup(["new@z.example"], [], [])
    assert crm.calls == calls + 1


def test_many_addresses_use_few_calls(sf: SalesforceUser) -> None:
    addresses = [f"contact{i:05d}@customer-{i % 13}.example" for i in range(2500)]
    for address in addresses[::50]:
        sf.data.add_contact(address)
    crm = sf.crm()
    people = crm.match(addresses)
    assert len(people) == 50
    queries = [q for c in sf.data.calls for q in c.queries]
    # Every query within the limits; at most five per Composite request.
    assert all(len(q) <= 100_000 for q in queries)
    assert all(sum(1 for m, k in c.subrequests if k == "query") <= 5 for c in sf.data.calls)
    assert crm.calls == len(sf.data.calls) == -(-len(queries) // 5)


def test_query_results_over_one_page_are_followed(sf: SalesforceUser) -> None:
    sf.data.query_page_size = 3
    for i in range(7):
        sf.data.add_contact(f"p{i}@customer.example")
    crm = sf.crm()
    people = crm.match([f"p{i}@customer.example" for i in range(7)])
    assert len(people) == 7
    assert [c.kind for c in sf.data.calls] == ["composite", "query_more", "query_more"]


# --- writing -------------------------------------------------------------------------------------

def test_one_email_with_relations_is_one_write_call(sf: SalesforceUser) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    carol = sf.data.add_lead("carol@prospect.example")
    owner = sf.user().sf_user_id
    crm = sf.crm()
    crm.capabilities()
    sf.data.reset_calls()
    result = crm.write(WritePlan(emails=[email("<m1@x>", to_ids=[carol, owner], from_id=bob)]))
    assert result.emails_written == 1 and result.relations_written == 1 and not result.rejected
    assert len(sf.data.calls) == 1 and len(sf.data.write_calls) == 1
    (message,) = sf.data.all("EmailMessage")
    assert message["MessageIdentifier"] == "<m1@x>"
    assert message["Status"] == "1" and message["Incoming"] is True
    assert message["ToAddress"] == "x@other.example"
    relations = {(r["RelationId"], r["RelationType"]) for r in sf.data.all("EmailMessageRelation")}
    assert relations == {(carol, "ToAddress"), (owner, "ToAddress"), (bob, "FromAddress")}


def test_emails_go_in_collections_of_200_five_per_call(sf: SalesforceUser) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    crm = sf.crm()
    crm.capabilities()
    sf.data.reset_calls()
    drafts = [email(f"<m{i}@x>", from_id=bob) for i in range(450)]
    result = crm.write(WritePlan(emails=drafts))
    assert result.emails_written == 450 and result.relations_written == 450
    # An email travels with its sender relation: 400 emails + 400 relations (4 collections) fill a
    # request (a fifth collection could not take a create without its relation), 50 + 50 follow.
    assert len(sf.data.calls) == 2
    assert [sum(1 for _, k in c.subrequests if k == "collection") for c in sf.data.calls] == [4, 2]
    assert [c.records_written for c in sf.data.calls] == [800, 100]
    assert len(sf.data.all("EmailMessage")) == 450
    assert len(sf.data.all("EmailMessageRelation")) == 450


def composite_bodies(fake_salesforce: Any) -> list[list[dict[str, Any]]]:
    """The subrequests of every Composite request the fake received, in order."""
    return [json.loads(c.body)["compositeRequest"] for c in fake_salesforce.calls.matching("POST", "/services/data")
            if c.path.endswith("/composite")]


def test_a_record_and_its_relations_always_travel_in_one_request(sf: SalesforceUser, fake_salesforce: Any) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    carol = sf.data.add_contact("carol@customer.example")
    crm = sf.crm()
    crm.capabilities()
    fake_salesforce.calls.reset()
    # The reviewer's case: 1,000 emails with a sender relation each, plus emails without one and
    # meetings with several relations, in one plan.
    drafts = [email(f"<m{i}@x>", from_id=bob if i % 7 else "", to_ids=[carol]) for i in range(1000)]
    # Contacts only: a lead cannot share a meeting with contacts (Shared Activities).
    events = [event(f"uid-{i}", [bob, carol, sf.data.add_contact(f"c{i}@customer.example")]) for i in range(30)]
    result = crm.write(WritePlan(emails=drafts, new_events=events))
    assert result.emails_written == 1000 and result.events_written == 30 and not result.rejected
    bodies = composite_bodies(fake_salesforce)
    for subrequests in bodies:
        assert sum(1 for s in subrequests if "/composite/sobjects" in s["url"]) <= 5
        creates = {s["referenceId"] for s in subrequests if s["method"] == "POST"
                   and s["body"]["records"][0]["attributes"]["type"] in ("EmailMessage", "Event")}
        for sub in subrequests:
            for record in sub.get("body", {}).get("records", []):
                if record["attributes"]["type"] in ("EmailMessageRelation", "EventRelation"):
                    parent = record.get("EmailMessageId") or record.get("EventId")
                    # Always a reference to a create of the same request, never an id from an earlier one.
                    assert parent.startswith("@{") and parent[2:].split("[")[0] in creates, parent
    relations = sf.data.all("EmailMessageRelation")
    senders = {r["EmailMessageId"] for r in relations if r["RelationType"] == "FromAddress"}
    with_sender = {m["Id"] for m in sf.data.all("EmailMessage") if int(m["MessageIdentifier"][2:-3]) % 7}
    assert senders == with_sender
    assert len(sf.data.all("EventRelation")) == 60
    # 857 emails with a relation, 143 without, 30 meetings with 2 relations each:
    # 1,030 creates + 917 relations in requests of at most 5 whole collections.
    assert len(bodies) == 3


def test_a_record_with_more_relations_than_a_request_holds_still_gets_them_all(sf: SalesforceUser,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    people = [sf.data.add_contact(f"p{i}@customer.example") for i in range(901)]
    # The packing of one record's relation rows is under test, not Shared Activities' 50 contacts
    # (tests/sync/test_event_people.py proves that rule end to end): both guards are off.
    sf.data.event_people_rule = False
    monkeypatch.setattr(records, "joinable", lambda staying, wanted: wanted)
    crm = sf.crm()
    crm.capabilities()
    sf.data.reset_calls()
    result = crm.write(WritePlan(new_events=[event("uid-big", people)]))
    assert result.events_written == 1 and result.relations_written == 900 and not result.rejected
    # The meeting and 800 relations in one request, the last 100 (by id) in the next.
    assert [c.records_written for c in sf.data.calls] == [801, 100]
    assert len(sf.data.all("EventRelation")) == 900


def test_lookup_tells_which_existing_emails_lack_their_sender_relation(sf: SalesforceUser) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    whole = sf.data.insert("EmailMessage", MessageIdentifier="<whole@x>", Subject="x")
    sf.data.insert("EmailMessageRelation", EmailMessageId=whole, RelationId=bob, RelationType="FromAddress")
    broken = sf.data.insert("EmailMessage", MessageIdentifier="<broken@x>", Subject="x")
    sf.data.insert("EmailMessageRelation", EmailMessageId=broken, RelationId=bob, RelationType="ToAddress")
    crm = sf.crm()
    lookup = crm.lookup([], ["<whole@x>", "<broken@x>", "<new@x>"], [])
    assert lookup.existing_emails == {"<whole@x>", "<broken@x>"}
    assert lookup.email_ids == {"<whole@x>": whole, "<broken@x>": broken}
    assert lookup.emails_without_sender == {"<broken@x>"}
    assert crm.calls == 2  # describe + one lookup: the relations came with the Message-IDs
    sf.data.reset_calls()
    result = crm.write(WritePlan(sender_repairs=[SenderRepair(broken, email("<broken@x>", from_id=bob))]))
    assert result.relations_written == result.relations_repaired == 1 and len(sf.data.write_calls) == 1
    assert {(r["EmailMessageId"], r["RelationType"]) for r in sf.data.all("EmailMessageRelation")} == {
        (whole, "FromAddress"), (broken, "ToAddress"), (broken, "FromAddress")}
    # Cached per run; forget() makes the next lookup ask Salesforce again.
    sf.data.reset_calls()
    crm.lookup([], ["<new@x>"], [])
    assert sf.data.calls == []
    sf.data.insert("EmailMessage", MessageIdentifier="<new@x>", Subject="x")
    crm.forget(email_keys=["<new@x>"])
    assert crm.lookup([], ["<new@x>"], []).existing_emails == {"<new@x>"}
    assert len(sf.data.calls) == 1


def test_rejected_record_is_reported_and_the_rest_commit(sf: SalesforceUser) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    sf.data.rules.append(Rule("EmailMessage", lambda r: r.get("Subject") == "refuse me", "Subject not allowed"))
    crm = sf.crm()
    crm.capabilities()
    sf.data.reset_calls()
    drafts = [email("<ok1@x>", from_id=bob), email("<bad@x>", from_id=bob, subject="refuse me"),
              email("<ok2@x>", from_id=bob)]
    result = crm.write(WritePlan(emails=drafts))
    assert result.emails_written == 2
    assert [(r.key, r.object) for r in result.rejected] == [("<bad@x>", "EmailMessage")]
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in result.rejected[0].reason
    # The relation subrequest referenced the refused email and failed as a whole; its other rows are
    # resent with real ids in one more call.
    assert len(sf.data.write_calls) == 2
    assert result.relations_written == 2
    assert {r["EmailMessageId"] for r in sf.data.all("EmailMessageRelation")} == {
        m["Id"] for m in sf.data.all("EmailMessage")}


def test_a_locked_record_is_transient_not_rejected(sf: SalesforceUser) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    sf.data.rules.append(Rule("EmailMessage", lambda r: r.get("MessageIdentifier") == "<busy@x>", "row locked",
                              code="UNABLE_TO_LOCK_ROW", times=1))
    crm = sf.crm()
    crm.capabilities()
    result = crm.write(WritePlan(emails=[email("<ok@x>", from_id=bob), email("<busy@x>", from_id=bob)]))
    assert result.emails_written == 1 and result.rejected == []
    assert [(r.key, r.object) for r in result.transient] == [("<busy@x>", "EmailMessage")]
    assert "UNABLE_TO_LOCK_ROW" in result.transient[0].reason


@pytest.mark.parametrize(("times", "writes", "written", "transient"), [(1, 2, 1, 0), (None, 2, 0, 1)])
def test_locked_relation_rows_are_resent_once(sf: SalesforceUser, times: int | None, writes: int, written: int,
                                              transient: int) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    carol = sf.data.add_contact("carol@customer.example")
    # The sender's relation is a row of its own (recipients travel as the email's ToIds).
    sf.data.rules.append(Rule("EmailMessageRelation", lambda r: r.get("RelationId") == bob, "row locked",
                              code="UNABLE_TO_LOCK_ROW", times=times))
    crm = sf.crm()
    crm.capabilities()
    sf.data.reset_calls()
    result = crm.write(WritePlan(emails=[email("<a@x>", to_ids=[carol], from_id=bob)]))
    assert result.emails_written == 1 and result.rejected == []
    # One call for the email and its relation; the locked row again (with the email's id); never a third.
    assert len(sf.data.write_calls) == writes
    assert result.relations_written == written
    assert len(result.transient) == transient


def test_a_server_error_for_a_whole_subrequest_is_transient(sf: SalesforceUser, fake_salesforce: Any) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    sf.data.rules.append(Rule("EmailMessage", lambda r: True, "An unexpected error occurred",
                              code="UNKNOWN_EXCEPTION", times=1))
    crm = sf.crm()
    crm.capabilities()
    result = crm.write(WritePlan(emails=[email("<a@x>", from_id=bob)]))
    assert result.emails_written == 0 and result.rejected == []
    assert [r.key for r in result.transient] == ["<a@x>"]


def test_contact_deleted_between_matching_and_writing(sf: SalesforceUser) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    gone = sf.data.add_contact("gone@customer.example")
    crm = sf.crm()
    people = crm.match(["gone@customer.example", "bob@customer.example"])
    assert people["gone@customer.example"].id == gone
    sf.data.delete(gone)
    result = crm.write(WritePlan(emails=[email("<a@x>", to_ids=[gone], from_id=bob), email("<b@x>", from_id=bob)]))
    assert result.emails_written == 1
    assert len(result.rejected) == 1 and result.rejected[0].key == "<a@x>"
    assert "ENTITY_IS_DELETED" in result.rejected[0].reason


def test_oversized_fields_are_truncated_with_a_marker_not_rejected(sf: SalesforceUser) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    crm = sf.crm()
    huge = email("<big@x>", from_id=bob, subject="S" * 5000, body="B" * 200_000)
    huge.to_addresses = [f"r{i}@other.example" for i in range(2000)]
    result = crm.write(WritePlan(emails=[huge]))
    assert result.emails_written == 1 and not result.rejected
    (message,) = sf.data.all("EmailMessage")
    assert len(message["Subject"]) == 3000 and message["Subject"].endswith("[...]")
    assert len(message["TextBody"]) == 131_072 and message["TextBody"].endswith("[...]")
    assert len(message["ToAddress"]) <= 4000 and message["ToAddress"].endswith("more)")


def test_a_subject_of_emoji_is_truncated_as_salesforce_counts_not_rejected(sf: SalesforceUser) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    crm = sf.crm()
    result = crm.write(WritePlan(emails=[email("<emoji@x>", from_id=bob, subject="\U0001F389" * 2000)]))
    assert result.emails_written == 1 and not result.rejected
    (message,) = sf.data.all("EmailMessage")
    assert len(message["Subject"].encode("utf-16-le")) // 2 <= 3000 and message["Subject"].endswith("[...]")


def test_duplicate_key_written_meanwhile_counts_as_duplicate(sf: SalesforceUser) -> None:
    sf.data.add_contact("bob@customer.example")
    bob = sf.data.all("Contact")[0]["Id"]
    sf.data.insert("Event", Sidebar_Sync_Key__c="uid-1", Subject="Meeting")
    crm = sf.crm()
    result = crm.write(WritePlan(new_events=[event("uid-1", [bob])]))
    assert result.duplicates == 1 and result.events_written == 0 and not result.rejected


def test_events_with_relations_update_and_cancel(sf: SalesforceUser) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    carol = sf.data.add_contact("carol@customer.example")  # a contact: a lead cannot join a contact's meeting
    crm = sf.crm()
    result = crm.write(WritePlan(new_events=[event("uid-1", [bob, carol])]))
    assert result.events_written == 1 and result.relations_written == 1
    (stored,) = sf.data.all("Event")
    assert stored["WhoId"] == bob and stored["Sidebar_Sync_Key__c"] == "uid-1"
    assert [r["RelationId"] for r in sf.data.all("EventRelation")] == [carol]

    run2 = sf.crm()
    existing = run2.existing_events(["uid-1"])["uid-1"]
    assert existing.related_ids == {bob, carol}
    sf.data.reset_calls()
    unchanged = run2.write(WritePlan(changed_events=[(existing, event("uid-1", [bob, carol]))]))
    assert unchanged.events_unchanged == 1 and sf.data.calls == []  # nothing to do: no call at all
    moved = run2.write(WritePlan(changed_events=[(existing, event("uid-1", [bob, carol], subject="Moved",
                                                                  hours=2))]))
    assert moved.events_updated == 1 and len(sf.data.write_calls) == 1
    (stored,) = sf.data.all("Event")
    assert stored["Subject"] == "Moved" and stored["EndDateTime"].startswith("2026-11-20T12:00:00")

    run3 = sf.crm()
    existing = run3.existing_events(["uid-1"])["uid-1"]
    marked = run3.write(WritePlan(cancelled_events=[(existing, "mark")]))
    assert marked.events_marked == 1 and sf.data.all("Event")[0]["Subject"] == "Canceled: Moved"
    existing = sf.crm().existing_events(["uid-1"])["uid-1"]
    deleted = sf.crm().write(WritePlan(cancelled_events=[(existing, "delete")]))
    assert deleted.events_deleted == 1 and sf.data.all("Event") == []


def test_events_without_the_key_field_are_refused_with_a_setup_reason(sf: SalesforceUser) -> None:
    sf.data.key_field = None
    bob = sf.data.add_contact("bob@customer.example")
    result = sf.crm().write(WritePlan(new_events=[event("uid-1", [bob])]))
    assert result.events_written == 0 and "Sidebar_Sync_Key__c" in result.rejected[0].reason
    assert sf.data.all("Event") == []


def test_without_enhanced_email_emails_become_tasks(sf: SalesforceUser) -> None:
    sf.data.enhanced_email = False
    bob = sf.data.add_contact("bob@customer.example")
    crm = sf.crm()
    assert crm.capabilities().enhanced_email is False
    result = crm.write(WritePlan(emails=[email("<t1@x>", from_id=bob)]))
    assert result.emails_written == 1
    (task,) = sf.data.all("Task")
    assert task["TaskSubtype"] == "Email" and task["WhoId"] == bob and task["Sidebar_Sync_Key__c"] == "<t1@x>"
    assert task["Subject"] == "Email: Hello" and task["Description"].startswith("From: bob@customer.example")
    assert sf.data.all("EmailMessage") == []
    assert sf.crm().existing_emails(["<t1@x>", "<t2@x>"]) == {"<t1@x>"}


def test_capabilities_are_described_once_per_org(sf: SalesforceUser) -> None:
    sf.crm().capabilities()
    sf.crm().capabilities()
    assert [c.subrequests for c in sf.data.calls] == [[("GET", "describe"), ("GET", "describe")]]


def test_dedup_query_finds_what_the_org_holds(sf: SalesforceUser) -> None:
    sf.data.insert("EmailMessage", MessageIdentifier="<held@x>", Subject="x")
    crm = sf.crm()
    assert crm.existing_emails(["<held@x>", "<new@x>"]) == {"<held@x>"}


# --- errors and usage ----------------------------------------------------------------------------

def test_expired_session_is_refreshed_once(sf: SalesforceUser, fake_salesforce: Any) -> None:
    crm = sf.crm()
    fake_salesforce.state.expire_access_tokens()
    fake_salesforce.state.token_requests.clear()
    crm.match(["bob@customer.example"])
    assert fake_salesforce.state.token_requests == ["refresh_token"]
    assert [c.status for c in sf.data.calls] == [401, 200]


def test_revoked_refresh_token_is_auth_revoked(sf: SalesforceUser, fake_salesforce: Any) -> None:
    crm = sf.crm()
    fake_salesforce.state.revoke_refresh_tokens()
    with pytest.raises(AuthRevoked):
        crm.match(["bob@customer.example"])


def test_request_limit_exceeded(sf: SalesforceUser) -> None:
    sf.data.limit_exceeded = True
    with pytest.raises(ApiLimitExceeded):
        sf.crm().match(["bob@customer.example"])


def test_server_unavailable(sf: SalesforceUser) -> None:
    sf.data.fail_unavailable = 1
    with pytest.raises(Unavailable):
        sf.crm().match(["bob@customer.example"])


def test_usage_header_is_reported(sf: SalesforceUser) -> None:
    seen: list[ApiUsage] = []
    sf.data.api_used, sf.data.api_max = 4000, 5000
    crm = sf.crm(on_usage=seen.append)
    crm.match(["bob@customer.example"])
    assert crm.last_usage == ApiUsage(4001, 5000) and seen == [ApiUsage(4001, 5000)]
    assert crm.api_usage() == ApiUsage(4002, 5000)


def test_collection_subrequests_never_exceed_200(sf: SalesforceUser) -> None:
    bob = sf.data.add_contact("bob@customer.example")
    crm = sf.crm()
    crm.write(WritePlan(emails=[email(f"<k{i}@x>", from_id=bob) for i in range(201)]))
    # The fake refuses more than 200 records per collection; all were written.
    assert len(sf.data.all("EmailMessage")) == 201
    assert COLLECTION_MAX == 200


def test_lookup_urls_stay_under_16kb(sf: SalesforceUser, fake_salesforce: Any) -> None:
    keys = [f"<{'m' * 60}{i}@mail.example.com>" for i in range(1500)]
    sf.crm().existing_emails(keys)
    for call in fake_salesforce.calls.matching("POST", "/services/data"):
        body = __import__("json").loads(call.body)
        for sub in body.get("compositeRequest", []):
            assert len(sub["url"]) <= URI_MAX_CHARS
            query = parse_qs(urlsplit(sub["url"]).query).get("q", [""])[0]
            assert len(query) <= 100_000


def test_dedup_ignores_case_as_soql_does(sf: SalesforceUser) -> None:
    sf.data.insert("EmailMessage", MessageIdentifier="<ABC.Def@Mail.Example>", Subject="x")
    assert sf.crm().existing_emails(["<abc.def@mail.example>"]) == {"<abc.def@mail.example>"}


@pytest.mark.parametrize("held", ["lead", "50 contacts"])
def test_a_meeting_that_cannot_take_more_people_gets_no_relation_it_would_refuse(sf: SalesforceUser,
                                                                                held: str) -> None:
    # Related by hand in Salesforce: a lead, or 50 contacts (the most Shared Activities allows).
    if held == "lead":
        who, others = sf.data.add_lead("erin@prospect.example"), []
    else:
        who = sf.data.add_contact("c0@customer.example")
        others = [sf.data.add_contact(f"c{i}@customer.example") for i in range(1, 50)]
    event_id = sf.data.insert("Event", Sidebar_Sync_Key__c="uid-1", Subject="Meeting", WhoId=who)
    for person in others:
        sf.data.insert("EventRelation", EventId=event_id, RelationId=person, IsParent=True, IsWhat=False)
    bob = sf.data.add_contact("bob@customer.example")
    crm = sf.crm()
    existing = crm.existing_events(["uid-1"])["uid-1"]
    result = crm.write(WritePlan(changed_events=[(existing, event("uid-1", [bob], subject="Moved"))]))
    assert result.events_updated == 1 and not result.rejected and result.relations_written == 0
    assert bob not in {r["RelationId"] for r in sf.data.all("EventRelation")}
