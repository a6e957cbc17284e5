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
