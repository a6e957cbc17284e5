"""What is particular to the Gmail connector: batches, labels, history, Calendar's shapes, Google's limits.

The behaviour every mailbox connector shares is checked in ``test_mailbox_protocol.py``; these run
the real connector against the fake Google only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backend.connectors.google.batch import decode, encode
from backend.connectors.google.gate import UserGate
from backend.connectors.google.items import body_text, parse_event
from backend.connectors.mailbox import ChangePage, Deletion, Folder, Mailbox, Sensitivity, SyncWindow
from backend.errors import AuthRevoked, Throttled, Unavailable
from sandbox.harness.gmail import ADDRESS, GmailHarness
from sandbox.tls import CertPair, TestCA

CAROL = "carol@customer.example"


@pytest.fixture
def h(ca: TestCA, server_cert: CertPair) -> Iterator[GmailHarness]:
    """The Gmail harness."""
    harness = GmailHarness(server_cert, ca.ca_path)
    try:
        yield harness
    finally:
        harness.close()


def read(mailbox: Mailbox, cursors: dict[str, str] | None = None,
         folders: tuple[Folder, ...] = tuple(Folder)) -> list[ChangePage]:
    """Every page of one read."""
    window = SyncWindow.starting(datetime.now(UTC), backfill_days=6)
    return list(mailbox.read_changes(cursors or {}, window, folders))


def cursors_of(pages: list[ChangePage]) -> dict[str, str]:
    """The cursor of each folder's last page."""
    return {p.folder.value: p.cursor for p in pages}


def subjects(pages: list[ChangePage]) -> list[str]:
    """Subjects of the emails read, in order."""
    return [e.subject for p in pages for e in p.emails]


def test_the_backfill_pages_lists_and_fetches_in_batches_of_at_most_50(h: GmailHarness) -> None:
    when = datetime.now(UTC) - timedelta(hours=1)
    for i in range(520):
        h.add_email("inbox", subject=f"m{i}", sender=CAROL, to=[ADDRESS], message_id=f"<m{i}@x>",
                    when=when - timedelta(seconds=i))
    pages = read(h.connector(), folders=(Folder.INBOX,))
    assert len(pages) == 2 and [p.last for p in pages] == [False, True]  # 500 ids a list page
    assert sorted(subjects(pages)) == sorted(f"m{i}" for i in range(520))
    assert max(h.gmail.batch_sizes) == 50 and sum(h.gmail.batch_sizes) == 520
    lists = h.server.recorder.matching("GET", "/gmail/v1/users/me/messages")
    assert [c.query.get("labelIds") for c in lists] == [["INBOX"], ["INBOX"]]
    assert all(c.query["maxResults"] == ["500"] and c.query["q"][0].startswith("after:") for c in lists)

    # A cursor saved after the first page resumes the listing where it stopped.
    rest = read(h.connector(), {"inbox": pages[0].cursor}, folders=(Folder.INBOX,))
    assert len(subjects(rest)) == 20 and rest[-1].last


def test_the_history_id_is_taken_before_listing_so_mail_arriving_meanwhile_is_not_missed(h: GmailHarness) -> None:
    h.add_email("inbox", subject="before", sender=CAROL, to=[ADDRESS])
    connector = h.connector()
    window = SyncWindow.starting(datetime.now(UTC), backfill_days=6)
    pages = connector.read_changes({}, window, (Folder.INBOX,))
    first = next(pages)  # the profile was read, then the folder listed
    calls = [c.path for c in h.server.recorder.calls if c.path.startswith("/gmail/")]
    assert calls.index("/gmail/v1/users/me/profile") < calls.index("/gmail/v1/users/me/messages")
    h.add_email("inbox", subject="during the backfill", sender=CAROL, to=[ADDRESS])
    assert subjects([first]) == ["before"] and first.last
    later = read(h.connector(), {"inbox": first.cursor}, folders=(Folder.INBOX,))
    assert subjects(later) == ["during the backfill"]


def test_drafts_spam_and_trash_are_never_read_and_mail_moved_in_or_out_is(h: GmailHarness) -> None:
    h.gmail.add_message(ADDRESS, ["DRAFT"], subject="draft", sender=ADDRESS, to=[CAROL])
    h.gmail.add_message(ADDRESS, ["SPAM"], subject="spam", sender=CAROL, to=[ADDRESS])
    h.gmail.add_message(ADDRESS, ["TRASH"], subject="trash", sender=CAROL, to=[ADDRESS])
    archived = h.gmail.add_message(ADDRESS, [], subject="archived", sender=CAROL, to=[ADDRESS],
                                   when=datetime.now(UTC) - timedelta(hours=1))
    kept = h.add_email("inbox", subject="kept", sender=CAROL, to=[ADDRESS])
    first = read(h.connector())
    assert subjects(first) == ["kept"]

    h.gmail.change_labels(archived, add=["INBOX"])  # moved back into the inbox
    h.gmail.change_labels(kept, add=["TRASH"], remove=["INBOX"])  # deleted to the bin
    h.gmail.add_message(ADDRESS, ["INBOX", "SPAM"], subject="late spam", sender=CAROL, to=[ADDRESS])
    second = read(h.connector(), cursors_of(first))
    assert subjects(second) == ["archived"]
    assert {d.remote_id for p in second for d in p.deletions} == {kept}


def test_messages_are_parsed_from_their_headers_and_parts(h: GmailHarness) -> None:
    h.add_email("inbox", subject="Quote", sender="Carol Customer <carol@customer.example>",
                to=[ADDRESS], cc=["dave@partner.example"], body="Line one\nLine two", message_id="quote@x",
                sensitivity="confidential")
    (email,) = [e for p in read(h.connector()) for e in p.emails]
    assert email.message_id == "<quote@x>" and email.sender is not None
    assert (email.sender.email, email.sender.name) == (CAROL, "Carol Customer")
    assert [a.email for a in email.cc] == ["dave@partner.example"]
    assert email.body_text == "Line one\nLine two" and email.sensitivity is Sensitivity.CONFIDENTIAL
    assert email.received_at is not None and email.sent_at is not None
    html_only = {"mimeType": "multipart/mixed", "parts": [
        {"mimeType": "text/html", "body": {"data": "PHA-SGk8YnI-dGhlcmU8L3A-PHN0eWxlPnB7fTwvc3R5bGU-"}},
        {"mimeType": "application/pdf", "filename": "a.pdf", "body": {"attachmentId": "x"}}]}
    assert body_text(html_only) == "Hi\nthere"


def test_calendar_events_cancellations_and_deletions(h: GmailHarness) -> None:
    now = datetime.now(UTC)
    single = h.add_event(subject="Review", start=now + timedelta(days=1), end=now + timedelta(days=1, hours=1),
                         organizer=CAROL, attendees=[ADDRESS], uid="review@google.com")
    h.add_event(subject="Doctor", start=now + timedelta(days=2), end=now + timedelta(days=2, hours=1),
                organizer=ADDRESS, attendees=[], uid="doctor@google.com", sensitivity="confidential")
    occurrence_start = (now + timedelta(days=3)).replace(microsecond=0)
    h.calendar.add_event(ADDRESS, subject="Weekly", start=occurrence_start, end=occurrence_start + timedelta(hours=1),
                         attendees=[CAROL], uid="weekly@google.com", recurrence=["RRULE:FREQ=WEEKLY;COUNT=1"])
    h.calendar.add_event(ADDRESS, subject="Offsite", start=now + timedelta(days=5), end=now + timedelta(days=6),
                         all_day=True, uid="offsite@google.com")
    first = read(h.connector(), folders=(Folder.CALENDAR,))
    events = {e.subject: e for p in first for e in p.events}
    assert set(events) == {"Review", "Doctor", "Weekly", "Offsite"}
    assert events["Review"].dedup_key == "review@google.com"  # the iCalUID, as through the other providers
    assert events["Doctor"].sensitivity is Sensitivity.CONFIDENTIAL
    weekly = events["Weekly"]
    assert weekly.is_recurring and weekly.occurrence_start == occurrence_start
    assert weekly.dedup_key == f"weekly@google.com@{occurrence_start.strftime('%Y%m%dT%H%M%SZ')}"
    assert events["Offsite"].is_all_day

    h.cancel_event(single)
    h.calendar.delete_event(next(e.remote_id for e in events.values() if e.subject == "Doctor"))
    second = read(h.connector(), cursors_of(first), folders=(Folder.CALENDAR,))
    cancelled = [e for p in second for e in p.events]
    assert [(e.subject, e.is_cancelled) for e in cancelled] == [("Review", True)]
    assert [d.remote_id for p in second for d in p.deletions] == [events["Doctor"].remote_id]
    sync_call = h.server.recorder.matching("GET", "/calendar/v3/")[-1]
    assert "syncToken" in sync_call.query and "timeMin" not in sync_call.query


def test_a_tombstone_is_a_deletion() -> None:
    assert parse_event({"id": "abc", "status": "cancelled"}) == Deletion("abc", Folder.CALENDAR)


@pytest.mark.parametrize("kind", ["429", "403rate", "403user"])
def test_rate_limits_with_a_short_hint_are_waited_out(h: GmailHarness, kind: str) -> None:
    h.add_email("inbox", subject="hello", sender=CAROL, to=[ADDRESS])
    connector = h.connector()
    connector.identity()
    h.gmail.faults.inject(kind, retry_after=0.2)
    assert subjects(read(connector, folders=(Folder.INBOX,))) == ["hello"]


@pytest.mark.parametrize("kind", ["429", "403rate", "403user", "500", "503"])
def test_rate_limits_and_server_errors_with_a_long_hint_raise_throttled_with_it(h: GmailHarness, kind: str) -> None:
    connector = h.connector()
    connector.identity()
    h.gmail.faults.inject(kind, retry_after=90)
    with pytest.raises(Throttled) as caught:
        read(connector)
    assert caught.value.retry_after == pytest.approx(90, abs=1)


def test_the_projects_daily_quota_used_up_is_a_long_wait_not_a_revoked_login(h: GmailHarness) -> None:
    # Found in review: it read as a refused login (reconnect, counted towards disabling every mailbox).
    connector = h.connector()
    connector.identity()
    h.gmail.faults.inject("403daily")
    with pytest.raises(Throttled) as caught:
        read(connector)
    assert caught.value.retry_after >= 3600


@pytest.mark.parametrize("kind", ["429", "503"])
def test_a_batch_part_rate_limited_or_unavailable_with_retry_after_is_sent_again(h: GmailHarness, kind: str) -> None:
    for i in range(3):
        h.add_email("inbox", subject=f"m{i}", sender=CAROL, to=[ADDRESS])
    h.gmail.faults.inject(kind, retry_after=0.1, in_batch=True)
    assert sorted(subjects(read(h.connector(), folders=(Folder.INBOX,)))) == ["m0", "m1", "m2"]
    assert h.gmail.batch_sizes == [3, 1]


@pytest.mark.parametrize("kind", ["500", "503"])
def test_server_errors_are_unavailable(h: GmailHarness, kind: str) -> None:
    connector = h.connector()
    connector.identity()
    h.gmail.faults.inject(kind)
    with pytest.raises(Unavailable):
        read(connector)


@pytest.mark.parametrize("kind", ["500", "503"])
def test_server_errors_with_a_short_retry_after_are_waited_out(h: GmailHarness, kind: str) -> None:
    h.add_email("inbox", subject="hello", sender=CAROL, to=[ADDRESS])
    connector = h.connector()
    connector.identity()
    h.gmail.faults.inject(kind, 2, retry_after=0.2)
    assert subjects(read(connector, folders=(Folder.INBOX,))) == ["hello"]
    assert h.gmail.faults.rules[-1].hits == 2




def test_an_expired_access_token_is_refreshed_once(h: GmailHarness) -> None:
    h.add_email("inbox", subject="hello", sender=CAROL, to=[ADDRESS])
    connector = h.connector()
    connector.identity()
    h.google.expire_access_tokens()
    assert subjects(read(connector, folders=(Folder.INBOX,))) == ["hello"]
    assert h.google.token_requests.count("refresh_token") == 2


def test_a_refused_client_is_the_servers_problem_not_the_persons(h: GmailHarness) -> None:
    from backend.errors import ServiceMisconfigured

    h.google.client_secret = "rotated"
    with pytest.raises(ServiceMisconfigured):
        h.connector().identity()
    h.revoke_credentials()
    h.google.client_secret = h.settings.GOOGLE_CLIENT_SECRET
    with pytest.raises(AuthRevoked):
        h.connector().identity()


def test_quota_units_are_counted_as_google_counts_them(h: GmailHarness) -> None:
    for i in range(4):
        h.add_email("inbox", subject=f"m{i}", sender=CAROL, to=[ADDRESS])
    connector: Any = h.connector()
    read(connector, folders=(Folder.INBOX,))
    # profile 1 + messages.list 5 + 4 x messages.get 5
    assert connector.quota_units == h.quota_units() == 26


def test_the_gate_waits_for_quota_room_and_bounds_in_flight_requests() -> None:
    gate = UserGate(slots=2, quota=10)
    with gate.slot(6, max_wait=1), gate.slot(4, max_wait=1):
        assert gate._free == 0
    gate.hold_off(5)
    with pytest.raises(Throttled), gate.slot(1, max_wait=1):
        pass


def test_the_batch_format_round_trips() -> None:
    content_type, body = encode(["/gmail/v1/users/me/messages/a?format=full", "/gmail/v1/users/me/messages/b"])
    assert content_type.startswith("multipart/mixed; boundary=") and body.count(b"application/http") == 2
    boundary = "batch_x"
    answer = (f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-item-1>\r\n\r\n"
              "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{\"error\": {\"code\": 404}}\r\n"
              f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-item-0>\r\n\r\n"
              "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"id\": \"a\"}\r\n"
              f"--{boundary}--\r\n").encode()
    parts = decode(f"multipart/mixed; boundary={boundary}", answer, 2)
    assert parts[0].status == 200 and parts[0].body == {"id": "a"} and parts[1].status == 404


def test_a_batch_part_answering_200_without_its_message_is_asked_again_not_lost(h: GmailHarness) -> None:
    for i in range(3):
        h.add_email("inbox", subject=f"m{i}", sender=CAROL, to=[ADDRESS])
    h.gmail.faults.inject("garbled200", in_batch=True)
    assert sorted(subjects(read(h.connector(), folders=(Folder.INBOX,)))) == ["m0", "m1", "m2"]
    assert h.gmail.batch_sizes == [3, 1]


@pytest.mark.parametrize("body", ["<html>busy</html>", "", "null", "[]", "{}", "\"text\""])
def test_an_unreadable_success_part_is_left_out_so_it_is_sent_again(body: str) -> None:
    boundary = "batch_x"
    answer = (f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-item-0>\r\n\r\n"
              f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{body}\r\n"
              f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-item-1>\r\n\r\n"
              "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\n<html>gone</html>\r\n"
              f"--{boundary}--\r\n").encode()
    parts = decode(f"multipart/mixed; boundary={boundary}", answer, 2)
    assert 0 not in parts and parts[1].status == 404 and parts[1].body == {}


@pytest.mark.parametrize("date", ["Fri, 31 Dec 9999 23:59:59 -1200", "Fri, 31 Dec 9999 20:00:00 -0500", "garbage"])
def test_a_date_header_without_a_utc_form_falls_back_and_the_folder_goes_on(h: GmailHarness, date: str) -> None:
    # Anyone can send such a header: it must not stop the mailbox's every run (OverflowError).
    h.add_email("inbox", subject="good", sender=CAROL, to=[ADDRESS])
    odd = h.add_email("inbox", subject="odd date", sender=CAROL, to=[ADDRESS])
    message = h.gmail.mailbox(ADDRESS).messages[odd]
    message.headers = [(n, date if n == "Date" else v) for n, v in message.headers]
    emails = {e.subject: e for p in read(h.connector(), folders=(Folder.INBOX,)) for e in p.emails}
    assert sorted(emails) == ["good", "odd date"]
    assert emails["odd date"].sent_at == emails["odd date"].received_at  # internalDate, Gmail's own clock


def test_an_event_at_the_end_of_time_is_counted_unreadable_not_raised() -> None:
    from backend.connectors.google.calendar import CalendarRead
    from backend.connectors.mailbox import ChangePage

    page = ChangePage(folder=Folder.CALENDAR)
    entry = {"id": "ev1", "status": "confirmed", "summary": "x", "start": {"dateTime": "9999-12-31T20:00:00-05:00"},
             "end": {"dateTime": "9999-12-31T21:00:00-05:00"}, "organizer": {"email": CAROL}}
    CalendarRead._take(CalendarRead.__new__(CalendarRead), page, entry, "UTC")  # the unreadable path only
    assert page.unreadable == 1 and not page.events


@pytest.mark.parametrize("zone", ["America", "x" * 300, "Not/AZone"])
def test_an_unusable_time_zone_falls_back_to_the_calendars(zone: str) -> None:
    from backend.connectors.google.items import parse_event

    entry = {"id": "ev1", "status": "confirmed", "summary": "x", "iCalUID": "ev1@google.com",
             "start": {"dateTime": "2026-12-01T10:00:00", "timeZone": zone},
             "end": {"dateTime": "2026-12-01T11:00:00", "timeZone": zone}, "organizer": {"email": CAROL}}
    from backend.connectors.mailbox import EventItem

    event = parse_event(entry, "Europe/Paris")
    assert isinstance(event, EventItem) and event.start.isoformat() == "2026-12-01T09:00:00+00:00"
