"""Google Calendar series, all-day events and the window (issue 15): the fake answers as Google does, and the
real connector reads a series as its instances keyed as Exchange and Graph key them.

The first tests call the fake over https as a client would (what Google documents for events.list:
``singleEvents``, instance ids, ``originalStartTime``, sync rounds, ``orderBy``, 410); the others run the
real connector against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from backend.connectors.google.items import parse_event
from backend.connectors.mailbox import ChangePage, Deletion, EventItem, Folder, SyncWindow
from sandbox.google import CALENDAR_EVENTS_READONLY
from sandbox.harness.exchange import ExchangeHarness
from sandbox.harness.gmail import ADDRESS, GmailHarness
from sandbox.tls import CertPair, TestCA

CAROL, DAVE = "carol@customer.example", "dave@customer.example"
TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture
def h(ca: TestCA, server_cert: CertPair) -> Iterator[GmailHarness]:
    """The Gmail harness (its fake Google host serves the Calendar API too)."""
    harness = GmailHarness(server_cert, ca.ca_path)
    try:
        yield harness
    finally:
        harness.close()


def events_list(h: GmailHarness, **params: str) -> tuple[int, dict[str, Any]]:
    """One events.list call over https, as any client makes it."""
    user = h.google.find_user(ADDRESS)
    assert user is not None
    token = h.google.tokens_for(user, h.google.client_id, [CALENDAR_EVENTS_READONLY], refresh=False)["access_token"]
    resp = requests.get(f"{h.server.url}/calendar/v3/calendars/primary/events", params=params,
                        headers={"Authorization": f"Bearer {token}"}, verify=h.ca_path, timeout=10)
    return resp.status_code, resp.json()


def stamp(moment: datetime) -> str:
    """An instant as instance ids and our keys end."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def weekly(h: GmailHarness, first: datetime, rule: str = "RRULE:FREQ=WEEKLY;COUNT=4", uid: str = "weekly@google.com",
           all_day: bool = False) -> str:
    """A weekly series the mailbox organises, with Carol and Dave invited."""
    end = first + (timedelta(days=1) if all_day else timedelta(hours=1))
    return h.calendar.add_event(ADDRESS, subject="Weekly", start=first, end=end, attendees=[CAROL, DAVE], uid=uid,
                                recurrence=[rule], all_day=all_day)


def test_the_fake_lists_a_series_as_google_does(h: GmailHarness) -> None:
    first = (datetime.now(TOKYO) + timedelta(days=2)).replace(hour=10, minute=0, second=0, microsecond=0)
    master = weekly(h, first)
    status, body = events_list(h, singleEvents="true", orderBy="startTime")
    assert status == 200
    starts = [first + timedelta(days=7 * n) for n in range(4)]
    assert [i["id"] for i in body["items"]] == [f"{master}_{stamp(s)}" for s in starts]
    one = body["items"][1]
    assert one["recurringEventId"] == master and one["iCalUID"] == "weekly@google.com"
    assert one["originalStartTime"] == {"dateTime": starts[1].isoformat(), "timeZone": "Asia/Tokyo"}
    assert "recurrence" not in one
    # Without singleEvents: the master (with its rule) only; ordering by start time needs singleEvents.
    status, body = events_list(h)
    assert [(i["id"], i["recurrence"]) for i in body["items"]] == [(master, ["RRULE:FREQ=WEEKLY;COUNT=4"])]
    assert events_list(h, orderBy="startTime")[0] == 400
    # timeMin/timeMax bound the instances (an instance overlapping timeMin counts).
    status, body = events_list(h, singleEvents="true", timeMin=(starts[1] + timedelta(minutes=30)).isoformat(),
                               timeMax=starts[3].isoformat())
    assert [i["id"] for i in body["items"]] == [f"{master}_{stamp(s)}" for s in starts[1:3]]
    token = body["nextSyncToken"]
    assert events_list(h, syncToken=token, timeMin=first.isoformat())[0] == 400

    # One instance moved (an exception), one cancelled: the sync round reports those two only.
    moved = h.calendar.instance_id(master, starts[1])
    h.calendar.update_event(moved, start=starts[1] + timedelta(hours=2), end=starts[1] + timedelta(hours=3),
                            subject="Weekly (moved)")
    h.calendar.delete_event(h.calendar.instance_id(master, starts[2]))
    status, body = events_list(h, singleEvents="true", syncToken=token)
    changed = {i["id"]: i for i in body["items"]}
    assert changed[moved]["summary"] == "Weekly (moved)"
    assert changed[moved]["originalStartTime"]["dateTime"] == starts[1].isoformat()
    assert changed[moved]["start"]["dateTime"] == (starts[1] + timedelta(hours=2)).isoformat()
    gone = f"{master}_{stamp(starts[2])}"
    assert changed[gone] == {"kind": "calendar#event", "etag": changed[gone]["etag"], "id": gone,
                             "status": "cancelled", "recurringEventId": master,
                             "originalStartTime": {"dateTime": starts[2].isoformat(), "timeZone": "Asia/Tokyo"}}
    assert set(changed) == {moved, gone}
    # Without singleEvents the master is listed with its exception; a full round leaves the cancelled one out.
    assert [i["id"] for i in events_list(h)[1]["items"]] == [master, moved]
    assert len(events_list(h, singleEvents="true")[1]["items"]) == 3

    # The whole series deleted: every instance reported cancelled, with its id only.
    token = body["nextSyncToken"]
    h.calendar.delete_event(master)
    status, body = events_list(h, singleEvents="true", syncToken=token)
    assert sorted(i["id"] for i in body["items"]) == sorted(f"{master}_{stamp(s)}" for s in starts)
    assert {tuple(sorted(set(i) - {"etag"})) for i in body["items"]} == {("id", "kind", "status")}
    assert events_list(h, singleEvents="true")[1]["items"] == []
    h.calendar.expire_sync_tokens(ADDRESS)
    assert events_list(h, singleEvents="true", syncToken=body["nextSyncToken"])[0] == 410


def test_the_fake_gives_all_day_instances_date_ids_and_the_calendar_zone(h: GmailHarness) -> None:
    h.calendar.calendar(ADDRESS).time_zone = "Pacific/Kiritimati"
    day = date.today() + timedelta(days=3)
    master = weekly(h, datetime(day.year, day.month, day.day, tzinfo=ZoneInfo("Pacific/Kiritimati")),
                    rule="RRULE:FREQ=WEEKLY;COUNT=2", all_day=True)
    _, body = events_list(h, singleEvents="true")
    assert body["timeZone"] == "Pacific/Kiritimati"
    second = day + timedelta(days=7)
    assert [(i["id"], i["start"], i["end"], i["originalStartTime"]) for i in body["items"]] == [
        (f"{master}_{d.strftime('%Y%m%d')}", {"date": d.isoformat()}, {"date": (d + timedelta(days=1)).isoformat()},
         {"date": d.isoformat()}) for d in (day, second)]


# --- the real connector against the fake ----------------------------------------------------------------

def read(h: GmailHarness, cursors: dict[str, str] | None = None, now: datetime | None = None) -> list[ChangePage]:
    """Every calendar page of one read at ``now``."""
    window = SyncWindow.starting(now or datetime.now(UTC), backfill_days=6)
    return list(h.connector().read_changes(cursors or {}, window, (Folder.CALENDAR,)))


def by_key(pages: list[ChangePage]) -> dict[str, EventItem]:
    """The events read, by their Salesforce key."""
    return {e.dedup_key: e for p in pages for e in p.events}


def calendar_calls(h: GmailHarness) -> list[dict[str, list[str]]]:
    """The query of every events.list call so far."""
    return [c.query for c in h.server.recorder.matching("GET", "/calendar/v3/")]


def test_an_endless_series_is_read_inside_the_window_and_the_range_rolls_forward(h: GmailHarness) -> None:
    now = datetime.now(UTC)
    first = (now + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    weekly(h, first, rule="RRULE:FREQ=WEEKLY", uid="endless@google.com")
    window = SyncWindow.starting(now, backfill_days=6)
    pages = read(h, now=now)
    starts = [first + timedelta(days=7 * n) for n in range(60)]
    assert set(by_key(pages)) == {f"endless@google.com@{stamp(s)}" for s in starts if s < window.events_to}
    (call,) = calendar_calls(h)
    assert call["singleEvents"] == ["true"] and call["timeMax"] == [window.events_to.strftime("%Y-%m-%dT%H:%M:%SZ")]
    cursors = {"calendar": pages[-1].cursor}

    # Ten days on: the sync round alone, nothing changed.
    assert by_key(read(h, cursors, now=now + timedelta(days=10))) == {}
    assert "syncToken" in calendar_calls(h)[-1]
    # Forty days on, the round's range ends 30 days before the window's: the sync round is read to its end,
    # then the window again, so the occurrences that entered it are read.
    later = now + timedelta(days=40)
    rolled = read(h, cursors, now=later)
    moved_on = SyncWindow.starting(later, backfill_days=6)
    assert "syncToken" in calendar_calls(h)[-2] and "timeMin" in calendar_calls(h)[-1]
    assert set(by_key(rolled)) == {f"endless@google.com@{stamp(s)}" for s in starts
                                   if moved_on.events_from < s + timedelta(hours=1) and s < moved_on.events_to}
    assert [p.last for p in rolled] == [False, True]
    assert by_key(read(h, {"calendar": rolled[-1].cursor}, now=later)) == {}


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles", "Pacific/Kiritimati", "Etc/GMT+11"])
def test_an_all_day_series_is_keyed_as_exchange_and_graph_key_it(h: GmailHarness, zone: str) -> None:
    h.calendar.calendar(ADDRESS).time_zone = zone
    day = datetime.now(ZoneInfo(zone)).date() + timedelta(days=3)
    weekly(h, datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)), rule="RRULE:FREQ=WEEKLY;COUNT=3",
           uid="allday@google.com", all_day=True)
    days = [day + timedelta(days=7 * n) for n in range(3)]
    events = by_key(read(h))
    # Exchange's OriginalStart and Graph's originalStart of an all-day occurrence: its midnight in the series' zone.
    keys = [f"allday@google.com@{stamp(datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(zone)))}" for d in days]
    assert sorted(events) == sorted(keys)
    for key, d in zip(keys, days, strict=True):
        event = events[key]
        # The event itself stays on its date: midnight UTC to midnight UTC, whatever the zone.
        assert event.is_all_day and event.start == datetime(d.year, d.month, d.day, tzinfo=UTC)
        assert event.end == event.start + timedelta(days=1)


def test_instances_moved_cancelled_and_the_series_changed_and_deleted(h: GmailHarness) -> None:
    first = (datetime.now(TOKYO) + timedelta(days=2)).replace(hour=10, minute=0, second=0, microsecond=0)
    master = weekly(h, first)
    starts = [first + timedelta(days=7 * n) for n in range(4)]
    keys = [f"weekly@google.com@{stamp(s)}" for s in starts]
    pages = read(h)
    events = by_key(pages)
    assert sorted(events) == sorted(keys)
    assert {e.series_id for e in events.values()} == {master}  # the map keeps occurrences under the series
    assert all(e.is_recurring and e.remote_id == h.calendar.instance_id(master, s)
               for e, s in zip((events[k] for k in keys), starts, strict=True))

    moved = starts[1] + timedelta(days=1, hours=3)
    h.calendar.update_event(h.calendar.instance_id(master, starts[1]), start=moved, end=moved + timedelta(hours=1),
                            subject="Weekly (moved)")
    h.calendar.delete_event(h.calendar.instance_id(master, starts[2]))
    second = read(h, {"calendar": pages[-1].cursor})
    (exception,) = [e for p in second for e in p.events]
    assert exception.dedup_key == keys[1] and exception.subject == "Weekly (moved)" and exception.start == moved
    assert [d.remote_id for p in second for d in p.deletions] == [h.calendar.instance_id(master, starts[2])]

    # Dave leaves the series: every instance still on says so, the moved one too.
    h.calendar.update_event(master, attendees=[CAROL])
    third = read(h, {"calendar": second[-1].cursor})
    changed = by_key(third)
    assert sorted(changed) == sorted([keys[0], keys[1], keys[3]])
    assert {tuple(a.email for a in e.attendees) for e in changed.values()} == {(CAROL,)}
    assert changed[keys[1]].subject == "Weekly (moved)"

    h.calendar.delete_event(master)
    fourth = read(h, {"calendar": third[-1].cursor})
    assert [e for p in fourth for e in p.events] == []
    assert sorted(d.remote_id for p in fourth for d in p.deletions) == sorted(
        h.calendar.instance_id(master, s) for s in starts)


def test_calendar_entries_as_google_may_send_them() -> None:
    # A dateTime without an offset is in its timeZone.
    event = parse_event({"id": "e1", "iCalUID": "e1@google.com", "status": "confirmed",
                         "start": {"dateTime": "2027-01-04T10:00:00", "timeZone": "Asia/Tokyo"},
                         "end": {"dateTime": "2027-01-04T11:00:00", "timeZone": "Asia/Tokyo"}}, "Europe/London")
    assert isinstance(event, EventItem) and event.start == datetime(2027, 1, 4, 1, tzinfo=UTC)
    # A cancelled instance is guaranteed only its id, recurringEventId and originalStartTime: a deletion.
    cancelled = {"id": "m_20270104T010000Z", "status": "cancelled", "recurringEventId": "m",
                 "originalStartTime": {"dateTime": "2027-01-04T10:00:00+09:00"},
                 "start": {"dateTime": "2027-01-04T10:00:00+09:00"}}
    assert parse_event(cancelled) == Deletion("m_20270104T010000Z", Folder.CALENDAR)
    # An instance's original start in the calendar's zone when its own does not name one.
    instance = parse_event({"id": "m_20270104", "iCalUID": "m@google.com", "recurringEventId": "m",
                            "start": {"date": "2027-01-05"}, "end": {"date": "2027-01-06"},
                            "originalStartTime": {"date": "2027-01-04"}}, "Pacific/Kiritimati")
    assert isinstance(instance, EventItem) and instance.dedup_key == "m@google.com@20270103T100000Z"
    assert instance.start == datetime(2027, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize("zone", [("Tokyo Standard Time", "Asia/Tokyo"), ("UTC-11", "Etc/GMT+11")])
def test_one_all_day_series_through_exchange_and_google_has_the_same_keys(
        h: GmailHarness, ca: TestCA, server_cert: CertPair, zone: tuple[str, str]) -> None:
    windows_zone, iana = zone
    day = datetime.now(ZoneInfo(iana)).date() + timedelta(days=3)
    first = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(iana))
    h.calendar.calendar(ADDRESS).time_zone = iana
    weekly(h, first, rule="RRULE:FREQ=WEEKLY;COUNT=3", uid="UID-allday", all_day=True)
    exchange = ExchangeHarness(ca.ca_path, server_cert)
    try:
        state = exchange.state
        master = state.add_event(exchange.address, subject="Weekly", start=first, end=first + timedelta(days=1),
                                 organizer=exchange.address, attendees=[CAROL], uid="UID-allday", recurring=True,
                                 recurrence_end=day + timedelta(days=14), is_all_day=True, timezone=windows_zone)
        state.items[master].interval_days = 7
        window = SyncWindow.starting(datetime.now(UTC), backfill_days=6)
        through_exchange = {e.dedup_key: (e.start, e.end) for p in
                            exchange.connector().read_changes({}, window, (Folder.CALENDAR,)) for e in p.events}
    finally:
        exchange.close()
    through_google = {k: (e.start, e.end) for k, e in by_key(read(h)).items()}
    assert len(through_google) == 3 and through_google == through_exchange
