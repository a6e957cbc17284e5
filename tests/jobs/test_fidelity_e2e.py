"""A weekly series through a real ``rq worker`` for every mailbox harness (issue 15): created, one
occurrence moved, one deleted, an attendee removed, the series cancelled, a run after each change;
the Salesforce fake holds exactly the expected Events and relations after every run, under the same
keys (UID + original start) whichever provider the series came through.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e import SyncEnv
from tests.jobs.test_fidelity import add_all_day

pytestmark = pytest.mark.slow

CAROL, DAVE = "carol@customer.example", "dave@customer.example"
UID = "040000008200E00074C5B7101A82E008-WEEKLY"
KEY_FIELD = "Sidebar_Sync_Key__c"
WEEKS = 9


def key_of(start: datetime) -> str:
    """The Salesforce key of the occurrence originally at ``start``."""
    return f"{UID}@{start.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


class Series:
    """A weekly meeting the mailbox organises, changed on the harness's server the way it stores it."""

    def __init__(self, env: SyncEnv, first: datetime) -> None:
        self.harness: Any = env.harness
        self.starts = [first + timedelta(days=7 * n) for n in range(WEEKS)]
        address = self.harness.address
        if self.harness.provider == "exchange":
            state = self.harness.state
            self.master = state.add_event(address, subject="Weekly call", start=first, end=first + timedelta(hours=1),
                                          organizer=address, attendees=[CAROL, DAVE], uid=UID, recurring=True,
                                          recurrence_end=self.starts[-1].date())
            state.items[self.master].interval_days = 7
        elif self.harness.provider == "google":
            # One recurring event; events.list (singleEvents) gives its instances.
            self.master = self.harness.calendar.add_event(
                address, subject="Weekly call", start=first, end=first + timedelta(hours=1), organizer=address,
                attendees=[CAROL, DAVE], uid=UID, recurrence=[f"RRULE:FREQ=WEEKLY;COUNT={WEEKS}"])
        else:
            # calendarView gives a series as its instances: one event each, the series' UID.
            self.ids = [self.harness.graph.add_event(address, subject="Weekly call", start=s,
                                                     end=s + timedelta(hours=1), organizer=address,
                                                     attendees=[CAROL, DAVE], uid=UID, kind="occurrence",
                                                     original_start=s) for s in self.starts]
            self.gone: set[int] = set()

    def move(self, index: int, start: datetime, subject: str) -> None:
        """Move and retitle one occurrence (an exception)."""
        if self.harness.provider == "exchange":
            self.harness.state.modify_occurrence(self.master, self.starts[index], subject=subject, start=start,
                                                 end=start + timedelta(hours=1))
        elif self.harness.provider == "google":
            calendar = self.harness.calendar
            calendar.update_event(calendar.instance_id(self.master, self.starts[index]), subject=subject, start=start,
                                  end=start + timedelta(hours=1))
        else:
            self.harness.graph.update_item(self.ids[index], subject=subject, start=start,
                                           end=start + timedelta(hours=1), type="exception")

    def delete(self, index: int) -> None:
        """The organiser deletes one occurrence."""
        if self.harness.provider == "exchange":
            self.harness.state.delete_occurrence(self.master, self.starts[index])
        elif self.harness.provider == "google":
            self.harness.calendar.delete_event(self.harness.calendar.instance_id(self.master, self.starts[index]))
        else:
            self.harness.graph.delete_item(self.ids[index])
            self.gone.add(index)

    def attendees(self, people: list[str]) -> None:
        """Change who is invited to the whole series."""
        if self.harness.provider == "exchange":
            self.harness.state.update_item(self.master, attendees=people)
        elif self.harness.provider == "google":
            self.harness.calendar.update_event(self.master, attendees=people)  # "all events" of the series
        else:
            for index, item_id in enumerate(self.ids):
                if index not in self.gone:
                    self.harness.graph.update_item(item_id, attendees=people)

    def cancel(self) -> None:
        """The organiser cancels the series (every occurrence shows as cancelled)."""
        if self.harness.provider == "exchange":
            self.harness.cancel_event(self.master)
        elif self.harness.provider == "google":
            self.harness.calendar.delete_event(self.master)  # the organiser deletes the series
        else:
            for index, item_id in enumerate(self.ids):
                if index not in self.gone:
                    self.harness.cancel_event(item_id)


def held(env: SyncEnv) -> dict[str, tuple[str, str]]:
    """key -> (subject, start) of every Event in the fake org."""
    return {str(e[KEY_FIELD]): (str(e["Subject"]), str(e["StartDateTime"])[:16]) for e in env.sf.all("Event")}


def related(env: SyncEnv, person: str) -> set[str]:
    """Keys of the Events ``person`` (a Contact id) is related to (WhoId or EventRelation)."""
    events = {e["Id"]: str(e[KEY_FIELD]) for e in env.sf.all("Event")}
    found = {events[e["Id"]] for e in env.sf.all("Event") if e.get("WhoId") == person}
    return found | {events[r["EventId"]] for r in env.sf.all("EventRelation") if r["RelationId"] == person}


def at(moment: datetime) -> str:
    """A start as the fake stores it, to the minute."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def test_a_weekly_series_through_five_runs_leaves_exactly_the_expected_events(
        env_factory: Callable[..., SyncEnv]) -> None:
    env = env_factory()
    carol = env.sf.add_contact(CAROL, "Carol")
    dave = env.sf.add_contact(DAVE, "Dave")
    env.log_in()
    first = (datetime.now(tz=UTC) + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    series = Series(env, first)
    env.activate()
    env.worker()
    record = env.wait_runs(1)
    assert record["status"] == "ok", record
    expected = {key_of(s): ("Weekly call", at(s)) for s in series.starts}
    assert held(env) == expected
    assert related(env, carol) == related(env, dave) == set(expected)

    # One occurrence moved and retitled.
    moved = series.starts[1] + timedelta(days=1, hours=3)
    series.move(1, moved, "Weekly call (moved)")
    assert env.run_now()
    record = env.wait_runs(2)
    assert record["status"] == "ok" and record["counts"]["events_updated"] == 1, record
    expected[key_of(series.starts[1])] = ("Weekly call (moved)", at(moved))
    assert held(env) == expected

    # One occurrence deleted by the organiser: marked cancelled (the default preference).
    series.delete(2)
    assert env.run_now()
    record = env.wait_runs(3)
    assert record["status"] == "ok" and record["counts"]["events_cancelled"] == 1, record
    expected[key_of(series.starts[2])] = ("Canceled: Weekly call", at(series.starts[2]))
    assert held(env) == expected

    # Dave no longer invited: his relations go from every occurrence still on.
    series.attendees([CAROL])
    assert env.run_now()
    record = env.wait_runs(4)
    assert record["status"] == "ok", record
    assert record["counts"]["relations_removed"] == WEEKS - 1
    assert held(env) == expected
    assert related(env, dave) == {key_of(series.starts[2])}
    assert related(env, carol) == set(expected)

    # The series cancelled: every occurrence marked, none written again.
    series.cancel()
    assert env.run_now()
    record = env.wait_runs(5)
    assert record["status"] == "ok", record
    assert record["counts"]["events_written"] == 0
    for key, (subject, start) in list(expected.items()):
        if not subject.startswith("Canceled: "):
            expected[key] = (f"Canceled: {subject}", start)
    assert held(env) == expected
    assert len(env.sf.all("Event")) == WEEKS


def test_mail_cut_and_repaired_and_an_all_day_event_through_three_runs(env_factory: Callable[..., SyncEnv]) -> None:
    env = env_factory()
    carol = env.sf.add_contact(CAROL, "Carol")
    dave = env.sf.add_contact(DAVE, "Dave")
    erin = env.sf.add_contact("erin@customer.example", "Erin")
    env.log_in()
    address = env.harness.address
    # An email a broken run logged with its sender only; a newsletter to 2,100 people.
    env.harness.add_email("inbox", subject="Proposal", sender=CAROL, to=[address, DAVE], cc=["erin@customer.example"],
                          message_id="<proposal@customer.example>")
    logged = env.sf.insert("EmailMessage", MessageIdentifier="<proposal@customer.example>", Subject="Proposal")
    env.sf.insert("EmailMessageRelation", EmailMessageId=logged, RelationId=carol, RelationType="FromAddress")
    env.harness.add_email("inbox", subject="Newsletter", sender=CAROL,
                          to=[address, *(f"p{i}@crowd.example" for i in range(2_100))],
                          message_id="<newsletter@customer.example>")
    day = (datetime.now(tz=UTC) + timedelta(days=4)).date()
    event_id = add_all_day(env, "Offsite", day, 1, "Tokyo Standard Time", "Asia/Tokyo")
    env.sf.user_timezone = "America/Los_Angeles"
    env.activate()
    env.worker()
    record = env.wait_runs(1)
    assert record["status"] == "ok", record
    assert record["counts"]["recipients_cut_by"] == {"inbox": 1} and record["counts"]["recipients_dropped"] == 101
    assert record["counts"]["relations_repaired"] == 2
    proposal = {(r["RelationId"], r["RelationType"]) for r in env.sf.all("EmailMessageRelation")
                if r["EmailMessageId"] == logged}
    assert proposal == {(carol, "FromAddress"), (dave, "ToAddress"), (erin, "CcAddress")}
    assert sorted(m["MessageIdentifier"] for m in env.sf.all("EmailMessage")) == [
        "<newsletter@customer.example>", "<proposal@customer.example>"]
    (offsite,) = env.sf.all("Event")
    assert (offsite["IsAllDayEvent"], offsite["ActivityDate"]) == (True, day.isoformat())

    # Nothing new: nothing repaired twice, nothing written.
    assert env.run_now()
    quiet = env.wait_runs(2)
    assert quiet["status"] == "ok" and quiet["counts"]["read"] == 0 and quiet["salesforce_calls"] == 0
    assert len(env.sf.all("EmailMessageRelation")) == 3 + 2  # the proposal's, the newsletter's sender and owner

    # The offsite moves a day later (still all day, in Tokyo).
    later = day + timedelta(days=1)
    start = datetime(later.year, later.month, later.day, tzinfo=ZoneInfo("Asia/Tokyo"))
    env.harness.update_event(event_id, start=start, end=start + timedelta(days=1))
    assert env.run_now()
    moved = env.wait_runs(3)
    assert moved["status"] == "ok" and moved["counts"]["events_updated"] == 1, moved
    (offsite,) = env.sf.all("Event")
    assert (offsite["IsAllDayEvent"], offsite["ActivityDate"]) == (True, later.isoformat())
    assert offsite["StartDateTime"].startswith(f"{later.isoformat()}T00:00:00")
