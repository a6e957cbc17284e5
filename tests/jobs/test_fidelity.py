"""Meetings and mail as they are (issue 15), at the wire level: the real mailbox connector against its
fake (EWS, Graph or Google), the real Salesforce connector against its fake, runs driven in this process.

Each case changes the mailbox on the server side between runs and checks what the Salesforce fake
holds afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from backend.connectors.mailbox import MAX_RECIPIENTS
from tests.e2e import SyncEnv
from tests.jobs.conftest import jobs_in_process
from tests.runs import run_mailbox

CONTACT = "carol@customer.example"
OTHER = "dave@customer.example"


@pytest.fixture
def env(env_factory: Callable[..., SyncEnv]) -> Iterator[SyncEnv]:
    """Alice logged in, two contacts in Salesforce, sync activated for the harness's mailbox."""
    environment = env_factory()
    environment.sf.add_contact(CONTACT, "Carol")
    environment.sf.add_contact(OTHER, "Dave")
    environment.log_in()
    environment.activate()
    with jobs_in_process(environment):
        yield environment


def test_a_message_with_more_than_2000_recipients_is_cut_with_a_trace_in_the_run_record(env: SyncEnv) -> None:
    crowd = [f"person{i}@crowd.example" for i in range(MAX_RECIPIENTS + 150)]
    env.harness.add_email("inbox", subject="Newsletter", sender=CONTACT, to=[env.harness.address, *crowd],
                          message_id="<crowd@customer.example>")
    env.harness.add_email("inbox", subject="Small", sender=CONTACT, to=[env.harness.address],
                          message_id="<small@customer.example>")
    with env.app.app_context():
        record = run_mailbox(env.uid, interactive=True)
        shown = env.mailbox().last_run
    counts = record["counts"]
    assert record["status"] == "ok", record
    assert counts["emails_written"] == 2
    assert counts["recipients_cut"] == 1
    assert counts["recipients_cut_by"] == {"inbox": 1}
    assert counts["recipients_dropped"] == 151  # the mailbox itself is among the To
    # The pane reads the last run from the sync JSON.
    assert shown is not None and shown["counts"]["recipients_cut_by"] == {"inbox": 1}



def soon(days: float = 2, hour: int = 15) -> datetime:
    """A whole hour ``days`` from now (UTC)."""
    return (datetime.now(tz=UTC) + timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


def test_a_meeting_moved_outside_the_calendar_range_is_updated_not_cancelled(env: SyncEnv) -> None:
    start = soon()
    with env.app.app_context():
        remote_id = env.harness.add_event(subject="Review", start=start, end=start + timedelta(hours=1),
                                          organizer=env.harness.address, attendees=[CONTACT], uid="UID-moved")
        assert run_mailbox(env.uid, interactive=True)["counts"]["events_written"] == 1
        # Moved to half a year ahead: out of the range (Graph's delta says @removed).
        later = soon(days=200)
        env.harness.update_event(remote_id, start=later, end=later + timedelta(hours=2))
        moved = run_mailbox(env.uid, interactive=True)
        assert moved["status"] == "ok", moved
        assert moved["counts"]["events_cancelled"] == 0 and moved["counts"]["events_updated"] == 1
        (event,) = env.sf.all("Event")
        assert event["Subject"] == "Review"
        assert event["StartDateTime"].startswith(later.strftime("%Y-%m-%dT%H:%M:%S"))
        # Deleted for real now (the organiser cancelled): the GET says 404, the cancellation applies.
        env.harness.delete_event(remote_id)
        gone = run_mailbox(env.uid, interactive=True)
    assert gone["counts"]["events_cancelled"] == 1
    assert [e["Subject"] for e in env.sf.all("Event")] == ["Canceled: Review"]


def test_the_rerun_repairs_every_missing_relation_of_a_logged_email_to_and_cc_too(env: SyncEnv) -> None:
    third = env.sf.add_contact("erin@customer.example", "Erin")
    people = {m["Email"]: m["Id"] for m in env.sf.all("Contact")}
    env.harness.add_email("inbox", subject="Proposal", sender=CONTACT, to=[env.harness.address, OTHER],
                          cc=["erin@customer.example"], message_id="<proposal@customer.example>")
    # What a run that died after the email was written leaves (its relations refused as transient,
    # then the run stopped): the email, with its sender only.
    logged = env.sf.insert("EmailMessage", MessageIdentifier="<proposal@customer.example>", Subject="Proposal")
    env.sf.insert("EmailMessageRelation", EmailMessageId=logged, RelationId=people[CONTACT],
                  RelationType="FromAddress")
    with env.app.app_context():
        record = run_mailbox(env.uid, interactive=True)
    assert record["status"] == "ok", record
    assert record["counts"]["duplicates"] == 1 and record["counts"]["emails_written"] == 0
    rows = sorted((r["RelationId"], r["RelationType"]) for r in env.sf.all("EmailMessageRelation"))
    # Every contact's relation; the mailbox owner (a User) is the writer's own, not repaired.
    assert rows == sorted([(people[CONTACT], "FromAddress"), (people[OTHER], "ToAddress"), (third, "CcAddress")])
    assert record["counts"]["relations_repaired"] == 2
    with env.app.app_context():
        again = run_mailbox(env.uid, interactive=True)
    assert again["counts"]["relations_repaired"] == 0


# (Windows zone of the mailbox, its IANA name, the zone the server runs in, the Salesforce user's zone)
ZONES = [
    ("Tokyo Standard Time", "Asia/Tokyo", "America/Los_Angeles", "America/Los_Angeles"),
    ("Pacific Standard Time", "America/Los_Angeles", "Asia/Tokyo", "Europe/London"),
    ("Line Islands Standard Time", "Pacific/Kiritimati", "Etc/GMT+11", "America/Los_Angeles"),  # UTC+14
    ("UTC-11", "Etc/GMT+11", "Pacific/Kiritimati", "Pacific/Auckland"),  # the other side of the date line
]


def add_all_day(env: SyncEnv, subject: str, first: date, days: int, windows_zone: str, zone: str) -> str:
    """An all-day event made in ``zone``, on the harness's server, as that server stores it."""
    start = datetime(first.year, first.month, first.day, tzinfo=ZoneInfo(zone))
    end = start + timedelta(days=days)
    harness: Any = env.harness
    if harness.provider == "exchange":
        return str(harness.state.add_event(harness.address, subject=subject, start=start, end=end,
                                           organizer=harness.address, attendees=[CONTACT], is_all_day=True,
                                           timezone=windows_zone))
    if harness.provider == "google":
        # Google keeps an all-day event as dates (end exclusive), days in the calendar's zone.
        harness.calendar.calendar(harness.address).time_zone = zone
        return str(harness.calendar.add_event(harness.address, subject=subject, start=start, end=end,
                                              organizer=harness.address, attendees=[CONTACT], all_day=True))
    return str(harness.graph.add_event(harness.address, subject=subject, start=start, end=end,
                                       organizer=harness.address, attendees=[CONTACT], is_all_day=True))


@pytest.mark.parametrize(("windows_zone", "zone", "server_zone", "user_zone"), ZONES)
def test_an_all_day_event_stays_on_its_date_whatever_the_time_zones(
        env: SyncEnv, monkeypatch: pytest.MonkeyPatch, windows_zone: str, zone: str, server_zone: str,
        user_zone: str) -> None:
    first = (datetime.now(tz=UTC) + timedelta(days=5)).date()
    add_all_day(env, "Offsite", first, 1, windows_zone, zone)
    add_all_day(env, "Trade fair", first + timedelta(days=2), 3, windows_zone, zone)
    env.sf.user_timezone = user_zone
    monkeypatch.setenv("TZ", server_zone)
    time.tzset()
    try:
        with env.app.app_context():
            record = run_mailbox(env.uid, interactive=True)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert record["status"] == "ok", record
    # A multi-day block (a trade fair) is longer than a meeting: not logged, by design.
    assert record["counts"]["filtered_by"].get("too_long") == 1
    (offsite,) = env.sf.all("Event")
    assert offsite["Subject"] == "Offsite" and offsite["IsAllDayEvent"] is True
    assert offsite["ActivityDate"] == first.isoformat()
    assert offsite["StartDateTime"].startswith(f"{first.isoformat()}T00:00:00")
    assert offsite["EndDateTime"].startswith(f"{first.isoformat()}T00:00:00")


def meeting_people(env: SyncEnv) -> tuple[str, list[str]]:
    """The one Event's WhoId and the people of its EventRelation rows."""
    (event,) = env.sf.all("Event")
    rows = sorted(r["RelationId"] for r in env.sf.all("EventRelation") if r["EventId"] == event["Id"])
    return str(event.get("WhoId") or ""), rows


def test_attendees_removed_lose_the_relations_this_product_added_and_hand_added_ones_stay(env: SyncEnv) -> None:
    people = {m["Email"]: m["Id"] for m in env.sf.all("Contact")}
    by_hand = env.sf.add_contact("erin@customer.example", "Erin")
    start = soon()
    with env.app.app_context():
        remote_id = env.harness.add_event(subject="Pricing", start=start, end=start + timedelta(hours=1),
                                          organizer=env.harness.address, attendees=[CONTACT, OTHER],
                                          uid="UID-pricing")
        run_mailbox(env.uid, interactive=True)
        (event,) = env.sf.all("Event")
        # Someone relates Erin to the meeting by hand in Salesforce.
        env.sf.insert("EventRelation", EventId=event["Id"], RelationId=by_hand, IsParent=True)
        assert meeting_people(env) == (people[CONTACT], sorted([people[OTHER], by_hand]))
        env.harness.update_event(remote_id, attendees=[CONTACT])
        first = run_mailbox(env.uid, interactive=True)
        assert first["counts"]["relations_removed"] == 1
        assert meeting_people(env) == (people[CONTACT], [by_hand])
        # Carol leaves too and Dave comes back: Dave takes the WhoId, Erin still stays.
        env.harness.update_event(remote_id, attendees=[OTHER])
        second = run_mailbox(env.uid, interactive=True)
    assert second["counts"]["relations_removed"] == 1
    who, rows = meeting_people(env)
    assert who == people[OTHER] and by_hand in rows and people[CONTACT] not in rows


def test_updates_to_subject_time_location_and_attendees_reach_the_salesforce_event(env: SyncEnv) -> None:
    people = {m["Email"]: m["Id"] for m in env.sf.all("Contact")}
    start = soon()
    with env.app.app_context():
        remote_id = env.harness.add_event(subject="Kick-off", start=start, end=start + timedelta(hours=1),
                                          organizer=env.harness.address, attendees=[CONTACT], uid="UID-kickoff")
        run_mailbox(env.uid, interactive=True)
        later = start + timedelta(days=1, hours=2)
        env.harness.update_event(remote_id, subject="Kick-off (moved)", start=later,
                                 end=later + timedelta(minutes=90), location="Room 4",
                                 attendees=[CONTACT, OTHER])
        record = run_mailbox(env.uid, interactive=True)
        quiet = run_mailbox(env.uid, interactive=True)
    assert record["counts"]["events_updated"] == 1 and record["counts"]["events_written"] == 0
    (event,) = env.sf.all("Event")
    assert event["Subject"] == "Kick-off (moved)" and event["Location"] == "Room 4"
    assert event["StartDateTime"].startswith(later.strftime("%Y-%m-%dT%H:%M:%S"))
    assert event["EndDateTime"].startswith((later + timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M:%S"))
    assert meeting_people(env) == (people[CONTACT], [people[OTHER]])
    assert quiet["counts"]["events_updated"] == 0 and quiet["salesforce_calls"] == 0


KEY_FIELD = "Sidebar_Sync_Key__c"


def stamp(moment: datetime) -> str:
    """An occurrence's original start as it ends its key."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def events_by_key(env: SyncEnv) -> dict[str, dict[str, Any]]:
    """The fake org's Events by our key."""
    return {str(e[KEY_FIELD]): e for e in env.sf.all("Event")}


@pytest.mark.parametrize("env_factory", ["exchange"], indirect=True)
def test_an_exchange_series_is_logged_as_its_occurrences_with_exceptions_and_deletions(env: SyncEnv) -> None:
    state: Any = env.harness.state  # type: ignore[attr-defined]
    first = soon(days=1, hour=10)
    master = state.add_event(env.harness.address, subject="Weekly call", start=first, end=first + timedelta(hours=1),
                             organizer=env.harness.address, attendees=[CONTACT, OTHER], uid="UID-weekly",
                             recurring=True, recurrence_end=(first + timedelta(days=60)).date())
    state.items[master].interval_days = 7
    starts = [first + timedelta(days=7 * n) for n in range(9)]
    with env.app.app_context():
        record = run_mailbox(env.uid, interactive=True)
        assert record["status"] == "ok", record
        assert set(events_by_key(env)) == {f"UID-weekly@{stamp(s)}" for s in starts}
        # One occurrence moved and retitled, one deleted by the organiser.
        moved = starts[1] + timedelta(hours=2)
        state.modify_occurrence(master, starts[1], subject="Weekly call (moved)", start=moved,
                                end=moved + timedelta(hours=1))
        state.delete_occurrence(master, starts[2])
        second = run_mailbox(env.uid, interactive=True)
        assert second["counts"]["events_cancelled"] == 1 and second["counts"]["events_written"] == 0, second["counts"]
        held = events_by_key(env)
        assert held[f"UID-weekly@{stamp(starts[1])}"]["Subject"] == "Weekly call (moved)"
        assert held[f"UID-weekly@{stamp(starts[1])}"]["StartDateTime"].startswith(moved.strftime("%Y-%m-%dT%H"))
        assert held[f"UID-weekly@{stamp(starts[2])}"]["Subject"] == "Canceled: Weekly call"
        assert held[f"UID-weekly@{stamp(starts[3])}"]["Subject"] == "Weekly call"
        assert len(held) == 9
        # Dave leaves the series: his relation goes from every occurrence still on.
        state.update_item(master, attendees=[CONTACT])
        third = run_mailbox(env.uid, interactive=True)
        assert third["counts"]["relations_removed"] == 8
        live = [e["Id"] for k, e in events_by_key(env).items() if k != f"UID-weekly@{stamp(starts[2])}"]
        dave = {m["Email"]: m["Id"] for m in env.sf.all("Contact")}[OTHER]
        assert not [r for r in env.sf.all("EventRelation") if r["EventId"] in live and r["RelationId"] == dave]
        # The organiser deletes the whole series: the deletion names the master only.
        state.delete_item(master)
        fourth = run_mailbox(env.uid, interactive=True)
    assert fourth["counts"]["deletions"] == 1 and fourth["counts"]["events_cancelled"] == 8
    assert {e["Subject"] for e in env.sf.all("Event")} == {"Canceled: Weekly call", "Canceled: Weekly call (moved)"}
    assert len(env.sf.all("Event")) == 9


@pytest.mark.parametrize("env_factory", ["google"], indirect=True)
def test_a_google_series_is_logged_as_its_instances_with_exceptions_and_cancellations(env: SyncEnv) -> None:
    calendar: Any = env.harness.calendar  # type: ignore[attr-defined]
    address = env.harness.address
    first = soon(days=1, hour=10)
    master = calendar.add_event(address, subject="Weekly call", start=first, end=first + timedelta(hours=1),
                                organizer=address, attendees=[CONTACT, OTHER], uid="UID-weekly",
                                recurrence=["RRULE:FREQ=WEEKLY;COUNT=9"])
    starts = [first + timedelta(days=7 * n) for n in range(9)]
    with env.app.app_context():
        record = run_mailbox(env.uid, interactive=True)
        assert record["status"] == "ok", record
        # The same keys as the series through Exchange or Graph: UID + original start.
        assert set(events_by_key(env)) == {f"UID-weekly@{stamp(s)}" for s in starts}
        # One instance moved and retitled (an exception), one cancelled by the organiser.
        moved = starts[1] + timedelta(hours=2)
        calendar.update_event(calendar.instance_id(master, starts[1]), subject="Weekly call (moved)", start=moved,
                              end=moved + timedelta(hours=1))
        calendar.delete_event(calendar.instance_id(master, starts[2]))
        second = run_mailbox(env.uid, interactive=True)
        assert second["counts"]["events_cancelled"] == 1 and second["counts"]["events_written"] == 0, second["counts"]
        assert second["counts"]["events_updated"] == 1
        held = events_by_key(env)
        assert held[f"UID-weekly@{stamp(starts[1])}"]["Subject"] == "Weekly call (moved)"
        assert held[f"UID-weekly@{stamp(starts[1])}"]["StartDateTime"].startswith(moved.strftime("%Y-%m-%dT%H"))
        assert held[f"UID-weekly@{stamp(starts[2])}"]["Subject"] == "Canceled: Weekly call"
        assert held[f"UID-weekly@{stamp(starts[3])}"]["Subject"] == "Weekly call"
        assert len(held) == 9
        # Dave leaves the series: his relation goes from every instance still on.
        calendar.update_event(master, attendees=[CONTACT])
        third = run_mailbox(env.uid, interactive=True)
        assert third["counts"]["relations_removed"] == 8
        live = [e["Id"] for k, e in events_by_key(env).items() if k != f"UID-weekly@{stamp(starts[2])}"]
        dave = {m["Email"]: m["Id"] for m in env.sf.all("Contact")}[OTHER]
        assert not [r for r in env.sf.all("EventRelation") if r["EventId"] in live and r["RelationId"] == dave]
        # The organiser deletes the whole series: every instance comes back cancelled, its id only.
        calendar.delete_event(master)
        fourth = run_mailbox(env.uid, interactive=True)
    assert fourth["counts"]["deletions"] == 9 and fourth["counts"]["events_cancelled"] == 8
    assert {e["Subject"] for e in env.sf.all("Event")} == {"Canceled: Weekly call", "Canceled: Weekly call (moved)"}
    assert len(env.sf.all("Event")) == 9
