"""The Graph connector against the fake Graph: delta rounds, paging, removals, resync, limits, auth."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from backend.connectors import MailboxContext, MailboxSecrets, open_mailbox
from backend.connectors.graph import (
    CACHE_SECRET,
    MESSAGE_FIELDS,
    MicrosoftAuth,
    identity_from,
    parse_email,
    parse_event,
)
from backend.connectors.mailbox import MAX_BODY_CHARS, ChangePage, Folder, Sensitivity, SyncWindow
from backend.errors import AuthRevoked, CursorExpired, ServiceMisconfigured, Throttled, Unavailable
from sandbox.harness.graph import GraphHarness
from sandbox.tls import CertPair, TestCA

NOW = datetime.now(tz=UTC).replace(microsecond=0)
WINDOW = SyncWindow.starting(NOW, 6)
CUSTOMER = "carol@customer.example"


@pytest.fixture
def harness(server_cert: CertPair, ca: TestCA) -> Iterator[GraphHarness]:
    """A fake tenant with one consented mailbox (pages of 50)."""
    h = GraphHarness(server_cert, ca.ca_path)
    yield h
    h.close()


@pytest.fixture
def small_pages(server_cert: CertPair, ca: TestCA) -> Iterator[GraphHarness]:
    """The same, with pages of 2 items."""
    h = GraphHarness(server_cert, ca.ca_path, page_size=2)
    yield h
    h.close()


def read_all(h: GraphHarness, cursors: dict[str, str] | None = None,
             folders: tuple[Folder, ...] = tuple(Folder)) -> tuple[list[ChangePage], dict[str, str]]:
    """Read every page with a fresh connector; returns the pages and the cursors after them."""
    cursors = dict(cursors or {})
    mailbox = h.connector()
    try:
        pages = list(mailbox.read_changes(cursors, WINDOW, folders))
    finally:
        mailbox.close()
    for page in pages:
        cursors[page.folder.value] = page.cursor
    return pages, cursors


def subjects(pages: list[ChangePage]) -> list[str]:
    """Subjects of every email and event, in order."""
    return [e.subject for p in pages for e in p.emails] + [e.subject for p in pages for e in p.events]


def seed(h: GraphHarness) -> dict[str, str]:
    """Three inbox emails, two sent, two events in the window, and one of each outside it."""
    ids = {
        "in1": h.add_email("inbox", subject="in1", sender=CUSTOMER, to=[h.address], when=NOW - timedelta(days=1)),
        "in2": h.add_email("inbox", subject="in2", sender=CUSTOMER, to=[h.address], when=NOW - timedelta(hours=3)),
        "in3": h.add_email("inbox", subject="in3", sender=CUSTOMER, to=[h.address], cc=["dan@customer.example"],
                           when=NOW - timedelta(minutes=5)),
        "old": h.add_email("inbox", subject="old", sender=CUSTOMER, to=[h.address], when=NOW - timedelta(days=30)),
        "out1": h.add_email("sent", subject="out1", sender=h.address, to=[CUSTOMER], when=NOW - timedelta(days=2)),
        "out2": h.add_email("sent", subject="out2", sender=h.address, to=[CUSTOMER], when=NOW - timedelta(hours=1)),
        "ev1": h.add_event(subject="ev1", start=NOW + timedelta(days=1), end=NOW + timedelta(days=1, hours=1),
                           organizer=h.address, attendees=[CUSTOMER]),
        "ev2": h.add_event(subject="ev2", start=NOW - timedelta(days=3), end=NOW - timedelta(days=3, hours=-1),
                           organizer=CUSTOMER, attendees=[h.address]),
        "evold": h.add_event(subject="evold", start=NOW - timedelta(days=60), end=NOW - timedelta(days=60, hours=-1),
                             organizer=CUSTOMER, attendees=[h.address]),
    }
    return ids


def test_seeded_mailbox_is_read_in_full_then_only_its_changes(harness: GraphHarness) -> None:
    ids = seed(harness)
    pages, cursors = read_all(harness)
    assert [p.folder for p in pages] == [Folder.INBOX, Folder.SENT, Folder.CALENDAR]
    assert all(p.last and not p.resynced for p in pages)
    assert subjects(pages) == ["in1", "in2", "in3", "out1", "out2", "ev1", "ev2"]
    # One $batch carried the three folders' first (and only) pages: 3 Graph requests, 1 HTTP call.
    calls = harness.graph_server.recorder.calls
    assert [(c.method, c.path) for c in calls] == [("POST", "/v1.0/$batch")]
    assert [path.split("?")[0] for _, path in harness.graph.batch_log] == [
        "/me/mailFolders/inbox/messages/delta", "/me/mailFolders/sentitems/messages/delta", "/me/calendarView/delta"]
    assert all("$deltatoken=" in c for c in cursors.values())

    again, cursors = read_all(harness, cursors)
    assert subjects(again) == [] and all(not p.deletions for p in again)

    new_id = harness.add_email("inbox", subject="in4", sender=CUSTOMER, to=[harness.address])
    harness.delete_email(ids["in1"])
    harness.update_event(ids["ev1"], subject="ev1 moved", start=NOW + timedelta(days=2),
                         end=NOW + timedelta(days=2, hours=1))
    changes, _ = read_all(harness, cursors)
    inbox, sent, calendar = changes
    assert [e.remote_id for e in inbox.emails] == [new_id]
    assert [d.remote_id for d in inbox.deletions] == [ids["in1"]]
    assert sent.emails == [] and sent.deletions == []
    assert [(e.remote_id, e.subject, e.start) for e in calendar.events] == [
        (ids["ev1"], "ev1 moved", NOW + timedelta(days=2))]


def test_items_are_normalised(harness: GraphHarness) -> None:
    harness.add_email("inbox", subject="Quote", sender="Carol@Customer.example", to=[harness.address],
                      cc=["dan@customer.example"], body="Hi there", message_id="abc@customer.example",
                      when=NOW - timedelta(hours=2), sensitivity="private")
    harness.add_event(subject="Demo", start=NOW + timedelta(hours=5), end=NOW + timedelta(hours=6),
                      organizer=CUSTOMER, attendees=[harness.address, "dan@customer.example"], uid="UID-1",
                      sensitivity="confidential")
    pages, _ = read_all(harness)
    email = pages[0].emails[0]
    assert email.message_id == "<abc@customer.example>"
    assert email.sender is not None and email.sender.email == "carol@customer.example"
    assert [a.email for a in email.to] == [harness.address] and [a.email for a in email.cc] == ["dan@customer.example"]
    assert email.body_text == "Hi there"  # asked for as text, not HTML
    assert email.sensitivity is Sensitivity.PRIVATE
    assert email.received_at == NOW - timedelta(hours=2)
    event = pages[2].events[0]
    assert (event.uid, event.start, event.end) == ("UID-1", NOW + timedelta(hours=5), NOW + timedelta(hours=6))
    assert event.organizer is not None and event.organizer.email == CUSTOMER
    assert [a.email for a in event.attendees] == [harness.address, "dan@customer.example"]
    assert event.sensitivity is Sensitivity.CONFIDENTIAL and not event.is_recurring and not event.is_cancelled
    # Only the fields sync uses are selected, sensitivity through PidTagSensitivity, bodies as text.
    _, first = harness.graph.batch_log[0]
    query = parse_qs(urlsplit(first).query)
    assert query["$select"] == [",".join(MESSAGE_FIELDS)]
    assert query["$expand"] == ["singleValueExtendedProperties($filter=id eq 'Integer 0x0036')"]
    assert query["$filter"] == [f"receivedDateTime ge {WINDOW.mail_since.strftime('%Y-%m-%dT%H:%M:%SZ')}"]
    _, calendar = harness.graph.batch_log[2]
    assert parse_qs(urlsplit(calendar).query)["startDateTime"] == [WINDOW.events_from.strftime("%Y-%m-%dT%H:%M:%SZ")]


def test_paging_follows_every_next_link_and_resumes_mid_round(small_pages: GraphHarness) -> None:
    h = small_pages
    for i in range(7):
        h.add_email("inbox", subject=f"m{i}", sender=CUSTOMER, to=[h.address], when=NOW - timedelta(hours=10 - i))
    pages, _ = read_all(h, folders=(Folder.INBOX,))
    assert [len(p.emails) for p in pages] == [2, 2, 2, 1]
    assert [p.last for p in pages] == [False, False, False, True]
    assert all("$skiptoken=" in p.cursor for p in pages[:-1]) and "$deltatoken=" in pages[-1].cursor
    assert subjects(pages) == [f"m{i}" for i in range(7)]
    gets = h.graph_server.recorder.matching("GET", "/v1.0/me/mailFolders/inbox/messages/delta")
    assert len(gets) == 4  # a single folder needs no $batch
    assert all('odata.maxpagesize=2' in c.headers["Prefer"] and 'outlook.body-content-type="text"'
               in c.headers["Prefer"] for c in gets)
    # A run that stopped after page 2 resumes from that page's cursor (its nextLink).
    resumed, _ = read_all(h, {"inbox": pages[1].cursor}, folders=(Folder.INBOX,))
    assert subjects(resumed) == ["m4", "m5", "m6"]


def test_removed_items_become_deletions(harness: GraphHarness) -> None:
    ids = seed(harness)
    _, cursors = read_all(harness)
    harness.delete_email(ids["out1"])
    harness.delete_event(ids["ev2"])
    harness.cancel_event(ids["ev1"])
    pages, _ = read_all(harness, cursors)
    inbox, sent, calendar = pages
    assert inbox.deletions == [] and inbox.emails == []
    assert [(d.remote_id, d.folder) for d in sent.deletions] == [(ids["out1"], Folder.SENT)]
    assert [(d.remote_id, d.folder) for d in calendar.deletions] == [(ids["ev2"], Folder.CALENDAR)]
    assert [(e.remote_id, e.is_cancelled) for e in calendar.events] == [(ids["ev1"], True)]


def test_expired_cursor_resyncs_the_folder_from_the_window(harness: GraphHarness) -> None:
    seed(harness)
    _, cursors = read_all(harness)
    harness.expire_cursors()
    pages, fresh = read_all(harness, cursors)
    assert all(p.resynced for p in pages)
    assert subjects(pages) == ["in1", "in2", "in3", "out1", "out2", "ev1", "ev2"]
    # One $batch (3 answers of 410), then one fresh read per folder.
    assert [c.path for c in harness.graph_server.recorder.calls][-4:] == [
        "/v1.0/$batch", "/v1.0/me/mailFolders/inbox/messages/delta", "/v1.0/me/mailFolders/sentitems/messages/delta",
        "/v1.0/me/calendarView/delta"]
    later, _ = read_all(harness, fresh)
    assert subjects(later) == [] and not any(p.resynced for p in later)


def test_410_in_the_middle_of_a_round_yields_no_duplicates(small_pages: GraphHarness) -> None:
    h = small_pages
    for i in range(5):
        h.add_email("inbox", subject=f"m{i}", sender=CUSTOMER, to=[h.address], when=NOW - timedelta(hours=10 - i))
    mailbox = h.connector()
    seen: list[str] = []
    flags: list[bool] = []
    for page in mailbox.read_changes({}, WINDOW, (Folder.INBOX,)):
        seen += [e.remote_id for e in page.emails]
        flags.append(page.resynced)
        if len(flags) == 1:
            h.expire_cursors()  # the nextLink of page 1 now answers 410
    mailbox.close()
    assert len(seen) == len(set(seen)) == 5
    assert flags[0] is False and all(flags[1:])


def _calendar_requests(h: GraphHarness) -> list[str]:
    """The query parameter names of each calendarView request ("startDateTime" starts a round)."""
    return [",".join(sorted(c.query)) for c in h.graph_server.recorder.calls if "calendarView" in c.path]


def test_the_calendar_range_rolls_forward_with_time(harness: GraphHarness) -> None:
    ids = seed(harness)
    _, cursors = read_all(harness, folders=(Folder.CALENDAR,))
    assert cursors["calendar"].startswith("cal1|")

    # Within the roll period the saved delta link is simply followed.
    harness.add_event(subject="far", start=NOW + timedelta(days=120), end=NOW + timedelta(days=120, hours=1),
                      organizer=harness.address, attendees=[CUSTOMER])
    mailbox = harness.connector()
    soon = list(mailbox.read_changes(cursors, SyncWindow.starting(NOW + timedelta(days=10), 6), (Folder.CALENDAR,)))
    mailbox.close()
    assert subjects(soon) == [] and not any(p.resynced for p in soon)

    # 60 days on, a change in the old range is still seen, then a new round over the current
    # window reports the meeting booked beyond the old range; nothing is yielded twice.
    harness.cancel_event(ids["ev1"])
    harness.add_event(subject="near", start=NOW + timedelta(days=61), end=NOW + timedelta(days=61, hours=1),
                      organizer=harness.address, attendees=[CUSTOMER])
    before = len(harness.graph_server.recorder.calls)
    later = SyncWindow.starting(NOW + timedelta(days=60), 6)
    mailbox = harness.connector()
    pages = list(mailbox.read_changes(cursors, later, (Folder.CALENDAR,)))
    mailbox.close()
    events = [e for p in pages for e in p.events]
    assert [(e.subject, e.is_cancelled) for e in events] == [("Canceled: ev1", True), ("near", False), ("far", False)]
    assert not any(p.resynced for p in pages)  # a roll is not a resync
    assert len(harness.graph_server.recorder.calls) - before == 2  # the old link, then one new round
    assert "startDateTime" in _calendar_requests(harness)[-1]
    rolled = pages[-1].cursor
    assert rolled.startswith(f"cal1|{int(later.events_to.timestamp())}|")

    # The new round's delta link is then followed as usual.
    mailbox = harness.connector()
    after = list(mailbox.read_changes({"calendar": rolled}, later, (Folder.CALENDAR,)))
    mailbox.close()
    assert subjects(after) == [] and len(after) == 1


def test_a_410_in_the_new_round_after_a_roll_still_resyncs_once(small_pages: GraphHarness) -> None:
    h = small_pages
    # Inside the old range and the new one alike: both rounds report them.
    for day in range(45, 50):
        h.add_event(subject=f"e{day}", start=NOW + timedelta(days=day), end=NOW + timedelta(days=day, hours=1),
                    organizer=h.address, attendees=[CUSTOMER])
    _, cursors = read_all(h, folders=(Folder.CALENDAR,))
    later = SyncWindow.starting(NOW + timedelta(days=40), 6)
    mailbox = h.connector()
    seen: list[str] = []
    rounds = 0
    expired = False
    for page in mailbox.read_changes(cursors, later, (Folder.CALENDAR,)):
        seen += [e.subject for e in page.events]
        if page.last:
            rounds += 1
        elif rounds == 1 and not expired:
            h.expire_cursors()  # the new round's nextLink answers 410
            expired = True
    mailbox.close()
    assert sorted(seen) == [f"e{day}" for day in range(45, 50)]
    assert len(seen) == len(set(seen))
    assert rounds == 2


def test_a_calendar_cursor_without_its_range_rolls_at_once(harness: GraphHarness) -> None:
    seed(harness)
    _, cursors = read_all(harness, folders=(Folder.CALENDAR,))
    bare = cursors["calendar"].split("|", 2)[2]
    pages, _ = read_all(harness, {"calendar": bare}, folders=(Folder.CALENDAR,))
    assert subjects(pages) == ["ev1", "ev2"]
    assert "$deltatoken" in _calendar_requests(harness)[-2] and "startDateTime" in _calendar_requests(harness)[-1]


def test_an_unreadable_item_is_counted_not_dropped_silently(harness: GraphHarness) -> None:
    good = harness.add_email("inbox", subject="fine", sender=CUSTOMER, to=[harness.address],
                             when=NOW - timedelta(hours=1))
    bad = harness.add_email("inbox", subject="broken", sender=CUSTOMER, to=[harness.address],
                            when=NOW - timedelta(hours=2))
    harness.graph.mailbox(harness.address).items[bad].data["toRecipients"] = 42  # not a list
    pages, _ = read_all(harness, folders=(Folder.INBOX,))
    assert [e.remote_id for p in pages for e in p.emails] == [good]
    assert sum(p.unreadable for p in pages) == 1


def test_resync_is_bounded(harness: GraphHarness) -> None:
    seed(harness)
    harness.graph.inject("410", None, path_contains="/mailFolders/inbox")
    mailbox = harness.connector()
    with pytest.raises(CursorExpired):
        list(mailbox.read_changes({}, WINDOW, (Folder.INBOX,)))
    # The first read and one resync: no loop.
    assert len(harness.graph_server.recorder.calls) == 2


def test_a_cursor_for_another_host_is_not_followed(harness: GraphHarness) -> None:
    seed(harness)
    foreign = "https://attacker.example/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=x"
    pages, _ = read_all(harness, {"inbox": foreign}, folders=(Folder.INBOX,))
    assert pages[0].resynced and subjects(pages) == ["in1", "in2", "in3"]


def test_short_retry_after_is_waited_out_before_any_request(harness: GraphHarness) -> None:
    seed(harness)
    harness.graph.inject("429", 1, retry_after=1)
    pages, _ = read_all(harness)
    assert subjects(pages) == ["in1", "in2", "in3", "out1", "out2", "ev1", "ev2"]
    calls = harness.graph_server.recorder.calls
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].started >= calls[0].finished + 1.0


def test_throttled_sub_request_in_a_batch_is_retried_after_its_wait(harness: GraphHarness) -> None:
    seed(harness)
    harness.graph.inject("429", 1, retry_after=1, in_batch=True, path_contains="/sentitems/")
    pages, _ = read_all(harness)
    assert subjects(pages) == ["in1", "in2", "in3", "out1", "out2", "ev1", "ev2"]
    calls = harness.graph_server.recorder.calls
    assert [c.path for c in calls] == ["/v1.0/$batch", "/v1.0/$batch"]
    assert calls[1].started >= calls[0].finished + 1.0
    # Only the throttled sub-request was sent again.
    assert [urlsplit(p).path for _, p in harness.graph.batch_log] == [
        "/me/mailFolders/inbox/messages/delta", "/me/mailFolders/sentitems/messages/delta", "/me/calendarView/delta",
        "/me/mailFolders/sentitems/messages/delta"]


def test_503_with_retry_after_is_retried(harness: GraphHarness) -> None:
    seed(harness)
    harness.graph.inject("503", 1, retry_after=1, path_contains="/mailFolders/inbox")
    pages, _ = read_all(harness, folders=(Folder.INBOX,))
    assert subjects(pages) == ["in1", "in2", "in3"]
    assert [c.status for c in harness.graph_server.recorder.calls] == [503, 200]


def test_long_retry_after_raises_throttled_without_hammering(harness: GraphHarness) -> None:
    seed(harness)
    harness.graph.inject("429", None, retry_after=120)
    mailbox = harness.connector()
    with pytest.raises(Throttled) as caught:
        list(mailbox.read_changes({}, WINDOW))
    assert caught.value.retry_after == 120
    assert len(harness.graph_server.recorder.calls) == 1


def test_a_slow_answer_times_out_as_unavailable(harness: GraphHarness) -> None:
    seed(harness)
    harness.settings = dataclasses.replace(harness.settings, OUTBOUND_TIMEOUT_SECONDS=1)
    harness.graph.inject("slow", 1, delay=2.5)
    mailbox = harness.connector()
    with pytest.raises(Unavailable):
        list(mailbox.read_changes({}, WINDOW, (Folder.INBOX,)))
    mailbox.close()
    # Nothing retried a request that may still be running on the server.
    assert len(harness.graph_server.recorder.calls) == 1


def _second_mailbox(h: GraphHarness, address: str) -> MailboxContext:
    user = h.ms.add_user(address, consented=True)
    grant = MicrosoftAuth(h.settings).on_behalf_of(h.ms.naa_token(address), user.tid)
    mid = h.mailbox_id + "-2"
    h.store.put(MailboxSecrets.KIND, mid, CACHE_SECRET, grant.cache)
    return MailboxContext(settings=h.settings, mailbox_id=mid, address=address,
                          connection=grant.connection("on_behalf_of"), secrets=MailboxSecrets(h.store, mid))


def test_never_more_than_four_requests_in_flight_per_mailbox(server_cert: CertPair, ca: TestCA) -> None:
    h = GraphHarness(server_cert, ca.ca_path, page_size=1)
    try:
        other = "bob@contoso.example"
        other_ctx = _second_mailbox(h, other)
        for i in range(4):
            h.add_email("inbox", subject=f"a{i}", sender=CUSTOMER, to=[h.address])
            h.graph.add_message(other, "inbox", subject=f"b{i}", sender=CUSTOMER, to=[other])
        h.graph.latency = 0.3
        errors: list[BaseException] = []
        counts: list[int] = []

        def worker(ctx: MailboxContext | None) -> None:
            mailbox = h.connector() if ctx is None else open_mailbox("microsoft", ctx)
            try:
                counts.append(sum(len(p.emails) for p in mailbox.read_changes({}, WINDOW, (Folder.INBOX,))))
            except BaseException as exc:  # collected: a thread's failure must fail the test
                errors.append(exc)
            finally:
                mailbox.close()

        threads = [threading.Thread(target=worker, args=(None if i % 2 == 0 else other_ctx,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors and counts == [4] * 16
        # Eight readers per mailbox: the bound is reached, never passed, per mailbox.
        assert h.graph.peak_in_flight(h.address) == 4
        assert h.graph.peak_in_flight(other) == 4
    finally:
        h.close()


class WeightedInFlight:
    """WSGI middleware: requests in flight per mailbox, a ``$batch`` of N sub-requests counting N.

    Graph runs a batch's sub-requests as requests of the mailbox: a batch of 3 and 2 single GETs
    at once are 5 concurrent requests, over the limit of 4.
    """

    def __init__(self, app: Any, tag_of: Any) -> None:
        self.app = app
        self.tag_of = tag_of
        self.lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.batches = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        weight = 1
        if environ.get("PATH_INFO", "").endswith("/$batch"):
            weight = len(json.loads(environ["wsgi.input"].getvalue() or b"{}").get("requests") or []) or 1
        tag = self.tag_of(environ)
        with self.lock:
            self.batches += weight > 1
            self.now[tag] = self.now.get(tag, 0) + weight
            self.peak[tag] = max(self.peak.get(tag, 0), self.now[tag])
        try:
            return [b"".join(self.app(environ, start_response))]
        finally:
            with self.lock:
                self.now[tag] -= weight


def test_a_batch_of_n_sub_requests_takes_n_of_the_four_slots(server_cert: CertPair, ca: TestCA) -> None:
    h = GraphHarness(server_cert, ca.ca_path, page_size=1)
    try:
        for i in range(3):
            h.add_email("inbox", subject=f"a{i}", sender=CUSTOMER, to=[h.address], when=NOW - timedelta(hours=i + 1))
            h.add_email("sent", subject=f"s{i}", sender=h.address, to=[CUSTOMER], when=NOW - timedelta(hours=i + 1))
        h.add_event(subject="ev", start=NOW + timedelta(days=1), end=NOW + timedelta(days=1, hours=1),
                    organizer=h.address, attendees=[CUSTOMER])
        recorder = h.graph_server.recorder
        weighted = WeightedInFlight(recorder.app, h.graph.tag_of)
        recorder.app = weighted
        h.graph.latency = 0.3
        errors: list[BaseException] = []
        counts: list[int] = []

        def reader() -> None:
            mailbox = h.connector()
            try:
                # The three folders' first pages go as one $batch of 3, the next pages as single GETs.
                pages = list(mailbox.read_changes({}, WINDOW))
                counts.append(sum(len(p.emails) + len(p.events) for p in pages))
            except BaseException as exc:  # collected: a thread's failure must fail the test
                errors.append(exc)
            finally:
                mailbox.close()

        threads = [threading.Thread(target=reader) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors and counts == [7] * 8
        assert weighted.batches == 8
        # Batches counted by their sub-requests: the bound is reached, never passed.
        assert weighted.peak[h.address] == 4
    finally:
        h.close()


def test_an_expired_app_secret_is_the_servers_problem_not_the_users(harness: GraphHarness,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    seed(harness)
    read_all(harness)
    # The app's client secret expired at Microsoft: every token request answers invalid_client.
    harness.ms.client_secret = "rotated-by-the-admin"
    harness.ms.expire_access_tokens()
    mailbox = harness.connector()
    caplog.set_level(logging.ERROR, logger="backend.connectors.graph.signin_errors")
    with pytest.raises(ServiceMisconfigured) as info:
        list(mailbox.read_changes({}, WINDOW))
    mailbox.close()
    assert info.value.transient and not isinstance(info.value, AuthRevoked)
    assert info.value.code == "service_misconfigured"
    (record,) = [r for r in caplog.records if r.name == "backend.connectors.graph.signin_errors"]
    assert record.levelno == logging.ERROR and "invalid_client" in record.getMessage()


@pytest.mark.parametrize(("error", "description", "expected"), [
    ("invalid_client", "AADSTS7000215: Invalid client secret provided.", ServiceMisconfigured),
    ("invalid_client", "AADSTS7000222: The provided client secret keys for app are expired.", ServiceMisconfigured),
    ("unauthorized_client", "AADSTS7000112: Application is disabled.", ServiceMisconfigured),
    # The tenant removed the app (or its admin consent): that tenant's people must act, others are fine.
    ("unauthorized_client", "AADSTS700016: Application was not found in the directory.", AuthRevoked),
    ("invalid_grant", "AADSTS70008: The refresh token has expired.", AuthRevoked),
    ("temporarily_unavailable", "AADSTS90033: A transient error has occurred.", Unavailable),
])
def test_token_errors_map_to_whose_problem_it_is(error: str, description: str, expected: type[Exception]) -> None:
    from backend.connectors.graph.signin_errors import token_from_result

    with pytest.raises(expected) as info:
        token_from_result({"error": error, "error_description": description}, "account=x")
    assert type(info.value) is expected


def test_refused_refresh_token_is_auth_revoked(harness: GraphHarness) -> None:
    seed(harness)
    read_all(harness)
    harness.revoke_credentials()
    mailbox = harness.connector()
    with pytest.raises(AuthRevoked):
        list(mailbox.read_changes({}, WINDOW))
    # The cached access token was refused (401), one refresh was tried and refused (invalid_grant).
    assert [c.status for c in harness.graph_server.recorder.calls][-1] == 401
    assert harness.ms.token_requests[-1] == "refresh_token"


def test_token_cache_is_written_back_only_when_it_changed(harness: GraphHarness) -> None:
    seed(harness)
    before = harness.store.puts
    read_all(harness)
    assert harness.store.puts == before  # the cached access token served: nothing to save
    harness.ms.expire_access_tokens()
    pages, _ = read_all(harness)
    assert subjects(pages)[:1] == ["in1"]
    assert harness.store.puts == before + 1  # refreshed once, saved once
    assert harness.ms.token_requests.count("refresh_token") == 1


def test_app_only_mode_reads_users_paths_with_client_credentials(server_cert: CertPair, ca: TestCA) -> None:
    h = GraphHarness(server_cert, ca.ca_path, app_only=True)
    try:
        seed(h)
        mailbox = h.connector()
        assert mailbox.identity().primary == h.address
        pages = list(mailbox.read_changes({}, WINDOW))
        mailbox.close()
        assert subjects(pages) == ["in1", "in2", "in3", "out1", "out2", "ev1", "ev2"]
        assert {urlsplit(p).path.split("/")[1:3][0] for _, p in h.graph.batch_log} == {"users"}
        assert all(urlsplit(p).path.startswith(f"/users/{h.user.oid}/") for _, p in h.graph.batch_log)
        assert h.ms.token_requests == ["client_credentials"]
        assert h.secrets() == {}
        # A cursor saved for delegated access (/me) cannot be read with an application token.
        delegated = f"{h.graph_server.url}/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=x"
        again, _ = read_all(h, {"inbox": delegated}, folders=(Folder.INBOX,))
        assert again[0].resynced and subjects(again) == ["in1", "in2", "in3"]
        h.revoke_credentials()
        with pytest.raises(AuthRevoked):
            h.connector().identity()
    finally:
        h.close()


def test_identity_includes_proxy_addresses_and_upn(harness: GraphHarness) -> None:
    identity = harness.connector().identity()
    assert identity.primary == harness.address
    assert identity.aliases == harness.aliases
    assert identity.matches("R.EP@contoso.example")
    call = harness.graph_server.recorder.calls[-1]
    assert call.query["$select"] == ["mail,userPrincipalName,proxyAddresses,displayName"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"mail": "A@x.example", "userPrincipalName": "a@x.example", "proxyAddresses": ["SMTP:A@x.example",
                                                                                      "smtp:b@x.example",
                                                                                      "x500:/o=X"]},
         ("a@x.example", {"b@x.example"})),
        ({"mail": None, "userPrincipalName": "u@x.example", "proxyAddresses": []}, ("u@x.example", set())),
        ({"mail": "m@x.example", "userPrincipalName": "upn@x.onmicrosoft.com"},
         ("m@x.example", {"upn@x.onmicrosoft.com"})),
    ],
)
def test_identity_from_profile(data: dict[str, Any], expected: tuple[str, set[str]]) -> None:
    identity = identity_from(data)
    assert (identity.primary, set(identity.aliases)) == expected


def test_parsing_bounds_bodies_and_recipients() -> None:
    many = [{"emailAddress": {"address": f"p{i}@x.example"}} for i in range(2_100)]
    email = parse_email({"id": "1", "internetMessageId": "<a@b>", "body": {"content": "x" * (MAX_BODY_CHARS + 10)},
                         "toRecipients": many, "receivedDateTime": "2026-11-01T10:00:00Z"}, Folder.INBOX)
    assert email.truncated and len(email.body_text) == MAX_BODY_CHARS and len(email.to) == 2_000
    occurrence = parse_event({"id": "e", "iCalUId": "U", "type": "occurrence",
                              "originalStart": "2026-11-02T09:00:00Z",
                              "start": {"dateTime": "2026-11-02T09:00:00.0000000", "timeZone": "UTC"},
                              "end": {"dateTime": "2026-11-02T10:00:00.0000000", "timeZone": "UTC"}})
    assert occurrence.is_recurring and occurrence.occurrence_start == datetime(2026, 11, 2, 9, tzinfo=UTC)
    assert occurrence.dedup_key == "U@20261102T090000Z"


@pytest.mark.parametrize(("location", "expected"), [
    ({"displayName": None}, ""), (None, ""), ({"displayName": "Room 4"}, "Room 4"), ({}, "")])
def test_a_meeting_without_a_place_has_no_location_text(location: object, expected: str) -> None:
    from backend.connectors.graph.items import parse_event

    event = parse_event({"id": "e1", "iCalUId": "uid-1", "subject": "Demo", "location": location,
                         "start": {"dateTime": "2026-12-01T10:00:00.0000000", "timeZone": "UTC"},
                         "end": {"dateTime": "2026-12-01T11:00:00.0000000", "timeZone": "UTC"}})
    assert event.location == expected
