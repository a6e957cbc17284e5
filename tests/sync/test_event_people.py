"""A meeting's people end to end: Shared Activities relates an event to up to 50 Contacts or one Lead.

The fake Salesforce refuses a Lead beside Contacts, a second Lead and a 51st Contact as the org
would, so a run that sent them would quarantine the meeting and re-send the refused relations on
every later change.
"""

from __future__ import annotations

import pytest

from backend.extensions import services
from tests.runs import run_mailbox
from tests.sfhelpers import SalesforceUser
from tests.sync.items import ListMailbox, meeting


def related(sf: SalesforceUser) -> list[str]:
    """The people the one Event is related to: its WhoId, then its EventRelation rows."""
    (event,) = sf.data.all("Event")
    rows = [r["RelationId"] for r in sf.data.all("EventRelation") if r["EventId"] == event["Id"]]
    return [event["WhoId"], *rows]


@pytest.mark.parametrize(("leads", "contacts", "kept"), [
    (1, 1, "contacts"),  # a lead and a contact: the contact
    (2, 0, "first lead"),  # two leads: the first listed
    (0, 51, "contacts"),  # 51 contacts: the first 50
    (0, 3, "contacts"),  # contacts only: all of them
], ids=["lead+contact", "two-leads", "51-contacts", "contacts-only"])
def test_a_meeting_is_related_as_salesforce_allows_and_not_refused_again(
        sf: SalesforceUser, box: ListMailbox, leads: int, contacts: int, kept: str) -> None:
    # Leads listed first, so that a who-list taken in order would put a lead beside the contacts.
    lead_ids = [sf.data.add_lead(f"l{i}@prospect.example") for i in range(leads)]
    contact_ids = [sf.data.add_contact(f"c{i}@customer.example") for i in range(contacts)]
    attendees = (*(f"l{i}@prospect.example" for i in range(leads)),
                 *(f"c{i}@customer.example" for i in range(contacts)))
    box.add("calendar", meeting(attendees, uid="m-1", subject="Review"))
    record = run_mailbox(sf.uid)
    assert record["counts"]["events_written"] == 1 and record["counts"]["quarantined"] == 0
    assert services().store.quarantine.recent(sf.uid) == []
    expected = contact_ids[:50] if kept == "contacts" else lead_ids[:1]
    assert related(sf) == expected

    # A later change of the meeting sends no relation again (none was refused, none is missing).
    box.add("calendar", meeting(attendees, uid="m-1", subject="Review (moved)", hours=2))
    sf.data.reset_calls()
    record = run_mailbox(sf.uid)
    assert record["counts"]["events_updated"] == 1 and record["counts"]["quarantined"] == 0
    assert record["counts"]["relations_written"] == 0 and related(sf) == expected


def test_a_relation_the_rule_held_back_is_not_recorded_as_ours(sf: SalesforceUser, box: ListMailbox) -> None:
    # Logged with one contact; someone then relates a Lead by hand, so no further contact may join.
    first = sf.data.add_contact("c0@customer.example")
    second = sf.data.add_contact("c1@customer.example")
    box.add("calendar", meeting(("c0@customer.example",), uid="m-1", subject="Review"))
    run_mailbox(sf.uid)
    (event,) = sf.data.all("Event")
    lead = sf.data.add_lead("l0@prospect.example")
    sf.data.insert("EventRelation", EventId=event["Id"], RelationId=lead, IsParent=True, IsWhat=False)
    # c1 joins the meeting: Salesforce would refuse relating them beside the lead, so the run does not.
    box.add("calendar", meeting(("c0@customer.example", "c1@customer.example"), uid="m-1", subject="Review"))
    record = run_mailbox(sf.uid)
    assert record["counts"]["quarantined"] == 0
    assert second not in related(sf)
    ours = services().store.meetings.added_relations(sf.user().org_id, ["m-1"])
    assert first in ours.get("m-1", frozenset()) and second not in ours["m-1"], ours
