"""The pane's answer for one item (``sync/status``) and the meeting it names (``sync/item.meeting_key``).

Pure logic over an in-memory trail and a stand-in CRM: each occurrence of a series answers for
itself, and Log it now is offered exactly for the reasons its own filters set aside.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from backend.connectors.crm import EventDraft, ExistingEvent, Lookup, WritePlan, WriteResult
from backend.connectors.mailbox import EventItem, Sensitivity
from backend.store.mailbox_record import SyncMailbox
from backend.store.mailboxes import SyncState
from backend.store.trail import ItemDecision
from backend.store.users import User
from backend.sync import item as item_module
from backend.sync import status as status_module
from backend.sync.filters import Filters, Reason
from backend.sync.status import FIRM_REASONS, ItemQuery, item_status
from backend.sync.trail import TrailRecorder
from tests.sync.items import OWNER, mail, meeting

FIRST = datetime(2026, 12, 1, 9, tzinfo=UTC)
SECOND = datetime(2026, 12, 8, 9, tzinfo=UTC)


class DictTrail:
    """``store.trail`` in memory, with the repository's key rule (identifiers compare without case)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], ItemDecision] = {}

    def record(self, mid: str, decisions: Iterable[tuple[str, ItemDecision]]) -> None:
        """Keep the latest decision per identifier."""
        for identifier, decision in decisions:
            self.rows[(mid, identifier.strip().lower())] = decision

    def get(self, mid: str, identifier: str) -> ItemDecision | None:
        """The decision about ``identifier``, or None."""
        return self.rows.get((mid, identifier.strip().lower()))


class EventsCrm:
    """A CRM holding some Events by key: the status view's Salesforce fallback."""

    def __init__(self, events: dict[str, ExistingEvent]) -> None:
        self.events = events
        self.asked: list[str] = []

    def existing_events(self, keys: Iterable[str]) -> dict[str, ExistingEvent]:
        """The Events held under ``keys``."""
        wanted = list(keys)
        self.asked.extend(wanted)
        return {k: self.events[k] for k in wanted if k in self.events}

    def names(self, ids: Iterable[str]) -> dict[str, str]:
        """No names are needed here."""
        return {}

    def close(self) -> None:
        """Nothing to close."""


def occurrence(day: datetime) -> EventItem:
    """One occurrence of the weekly series UID-WEEKLY."""
    return EventItem(remote_id=f"r-{day.day}", uid="UID-WEEKLY", subject="Weekly", start=day,
                     end=day + timedelta(hours=1), is_recurring=True, occurrence_start=day)


def mailbox(state: SyncState = SyncState.RUNNING) -> SyncMailbox:
    """Alice's sync mailbox."""
    return SyncMailbox(id="m1", user_id="m1", org_id="o", state=state)


USER = User(id="m1", org_id="o", sf_user_id="005", instance_url="https://acme.my.salesforce.com")


def answer(trail: DictTrail, query: ItemQuery, crm: EventsCrm | None = None,
           monkeypatch: pytest.MonkeyPatch | None = None) -> dict[str, Any]:
    """item_status over the in-memory trail (and ``crm`` as Salesforce, when given)."""
    if monkeypatch is not None:
        monkeypatch.setattr(status_module, "crm_for", lambda *args: crm or EventsCrm({}))
    store = SimpleNamespace(trail=trail, schedule=SimpleNamespace(next_of=lambda mid: None))
    return item_status(store, None, None, mailbox(), USER, query)  # type: ignore[arg-type]


def test_each_occurrence_of_a_series_gets_its_own_answer() -> None:
    occ1, occ2 = occurrence(FIRST), occurrence(SECOND)
    trail = DictTrail()
    recorder = TrailRecorder(trail, "m1", "background")  # type: ignore[arg-type]
    drafts = [EventDraft(key=o.dedup_key, subject="Weekly", body="", location="", start=o.start, end=o.end,
                         is_all_day=False) for o in (occ1, occ2)]
    plan = WritePlan(new_events=drafts)
    recorder.planned([], [occ1, occ2], Lookup(), plan)
    ids = {occ1.dedup_key: "00U000000000001AAA", occ2.dedup_key: "00U000000000002AAA"}
    recorder.written(plan, WriteResult(written_keys=set(ids), written_ids=ids))
    recorder.save()
    for occ, record_id in ((occ1, "00U000000000001AAA"), (occ2, "00U000000000002AAA")):
        found = answer(trail, ItemQuery(event_uid=occ.dedup_key))
        assert (found["status"], found["records"][0]["id"]) == ("logged", record_id)
    # The series UID names no single occurrence: no occurrence's decision answers for it.
    assert trail.get("m1", "UID-WEEKLY") is None


def test_a_logged_occurrence_is_found_in_salesforce_when_the_trail_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    occ = occurrence(FIRST)
    crm = EventsCrm({occ.dedup_key: ExistingEvent(id="00U000000000001AAA", key=occ.dedup_key)})
    found = answer(DictTrail(), ItemQuery(event_uid=occ.dedup_key), crm, monkeypatch)
    assert (found["status"], found["source"], found["records"][0]["id"]) == ("logged", "salesforce",
                                                                             "00U000000000001AAA")
    assert crm.asked == [occ.dedup_key]


def test_an_old_trail_entry_of_a_single_meeting_still_answers() -> None:
    """A single meeting's key is its UID, as before: entries recorded then are read by the same key."""
    trail = DictTrail()
    trail.record("m1", [("UID-SINGLE", ItemDecision(decision="logged", at=1.0, object="Event",
                                                    record_id="00U000000000003AAA"))])
    found = answer(trail, ItemQuery(event_uid=meeting(uid="UID-SINGLE").dedup_key))
    assert found["records"][0]["id"] == "00U000000000003AAA"


@pytest.mark.parametrize("item, key", [
    (occurrence(FIRST), "UID-WEEKLY@20261201T090000Z"),
    (meeting(uid="UID-SINGLE"), "UID-SINGLE"),
])
def test_the_meeting_outlook_shows_is_named_by_its_dedup_key(
    monkeypatch: pytest.MonkeyPatch, item: EventItem, key: str
) -> None:
    connector = SimpleNamespace(fetch_item=lambda kind, item_id: item, close=lambda: None)
    monkeypatch.setattr(item_module, "mailbox_for", lambda *args: connector)
    engine = SimpleNamespace(settings=None, clients=None, store=SimpleNamespace(
        mailboxes=SimpleNamespace(get=lambda mid: SimpleNamespace(activated=True))))
    assert item_module.meeting_key(engine, "m1", "AAMk-occurrence") == key  # type: ignore[arg-type]


def filtered(reason: str) -> dict[str, Any]:
    """The answer for a meeting the trail says was filtered for ``reason``."""
    trail = DictTrail()
    trail.record("m1", [("UID-X", ItemDecision(decision="filtered", at=1.0, reason=reason))])
    return answer(trail, ItemQuery(event_uid="UID-X"))


# What Log it now's filters still refuse: the button would fail again for these.
REFUSED_AGAIN = [
    (mail(sensitivity=Sensitivity.PRIVATE), Reason.PRIVATE),
    (mail(draft=True), Reason.DRAFT),
    (mail(sender="buyer@blocked.example"), Reason.BLOCKED_ORG),
    (mail(sender="colleague@acme.example"), Reason.INTERNAL),
    (mail(sender="", to=()), Reason.NO_PARTICIPANTS),
    (meeting(hours=30), Reason.TOO_LONG),
    (meeting(start=None), Reason.NO_START),
]
# What Log it now sets aside: the person's own choices.
SET_ASIDE = [
    (mail(sender="buyer@mine.example"), Reason.BLOCKED, {}),
    (mail(sender="friend@gmail.com"), Reason.FREE_MAIL, {}),
    (mail(), Reason.EMAILS_OFF, {"sync_emails": False}),
    (meeting(), Reason.EVENTS_OFF, {"sync_events": False}),
]


def run_filters(**kwargs: Any) -> Filters:
    """A run's filters: the org blocks blocked.example, the person mine.example."""
    return Filters.build([OWNER], [], ["blocked.example"], ["mine.example"], **kwargs)


def reason_of(filters: Filters, item: Any) -> Reason | None:
    """The filters' reason for an email or a meeting."""
    return filters.event(item) if isinstance(item, EventItem) else filters.email(item)


@pytest.mark.parametrize("item, reason", REFUSED_AGAIN)
def test_log_it_now_is_not_offered_for_what_it_would_filter_again(item: Any, reason: Reason) -> None:
    assert reason_of(run_filters().for_one_item(), item) is reason
    assert reason in FIRM_REASONS
    assert filtered(reason.value)["can_log_now"] is False


@pytest.mark.parametrize("item, reason, settings", SET_ASIDE)
def test_log_it_now_is_offered_for_what_it_sets_aside(item: Any, reason: Reason, settings: dict[str, bool]) -> None:
    assert reason_of(run_filters(**settings), item) is reason
    assert reason_of(run_filters(**settings).for_one_item(), item) is None
    assert reason not in FIRM_REASONS
    assert filtered(reason.value)["can_log_now"] is True


def test_log_it_now_is_not_offered_for_a_cancelled_meeting_but_is_for_what_may_change() -> None:
    """A cancelled meeting is never created; a new Contact (no_match) or a second read (unreadable) may help."""
    assert filtered(Reason.CANCELLED.value)["can_log_now"] is False
    assert filtered(Reason.NO_MATCH.value)["can_log_now"] is True
    assert filtered(Reason.UNREADABLE.value)["can_log_now"] is True
    assert {r.value for r in Reason} - FIRM_REASONS == {"blocked", "free_mail", "emails_off", "events_off",
                                                        "no_match", "unreadable"}
