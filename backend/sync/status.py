"""What sync did with one email or meeting of a person's mailbox: the answer the pane shows next to it.

The trail (``store.trail``) answers first: a run's decision about the item, with the Salesforce
record ids. When it has nothing, Salesforce is asked (it stays the authority for "logged"): an
EmailMessage by ``MessageIdentifier`` or an activity by our key, with the person's own login, so
their sharing rules apply. Names of the related people are read from Salesforce for the answer and
never stored. Without either, the item is "not yet" (the next run looks at it), or outside the
first sync's window, or sync is off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from backend.clients import Clients
from backend.config import Settings
from backend.connectors.crm import Crm
from backend.connectors.mailbox import EVENT_LOOKBACK_DAYS
from backend.store import Store
from backend.store.mailboxes import SyncMailbox, SyncState
from backend.store.trail import ItemDecision
from backend.store.users import User
from backend.sync.budget import iso
from backend.sync.collaborators import crm_for
from backend.sync.filters import Filters, Reason
from backend.sync.trail import ALREADY_LOGGED, FILTERED, LOGGED, REFUSED

# What Log it now sets aside: the reasons its own filters (Filters.for_one_item) never give.
ONE_ITEM_WAIVED = Filters.build((), (), (), ()).for_one_item().waived()
# Reasons Log it now would meet again, so it is not offered for them: every reason but those it sets
# aside and those a second try may change (a Contact or Lead added since: no_match; the item read
# again: unreadable). Privacy, the org's blocklist, who takes part (internal, no_participants) and a
# meeting's times (too_long, no_start) hold for one item too, and a cancelled meeting is never
# created. A new reason is firm until it is known to give way.
FIRM_REASONS = frozenset(r.value for r in Reason) - {r.value for r in ONE_ITEM_WAIVED} \
    - {Reason.NO_MATCH.value, Reason.UNREADABLE.value}


@dataclass(frozen=True)
class ItemQuery:
    """What the pane asks about: an email's Message-ID or a meeting's key (an occurrence's ``UID@start``), a date."""

    message_id: str = ""
    event_uid: str = ""
    item_date: datetime | None = None

    @property
    def identifier(self) -> str:
        """The Message-ID or meeting key asked about (the trail's key and Salesforce's)."""
        return self.message_id or self.event_uid

    @property
    def kind(self) -> str:
        """"email" or "event"."""
        return "email" if self.message_id else "event"


def record_url(user: User, obj: str, record_id: str) -> str:
    """The Lightning URL of a record in the person's Salesforce instance."""
    base = (user.instance_url or "").rstrip("/")
    return f"{base}/lightning/r/{obj}/{record_id}/view" if base and record_id else ""


def _records(user: User, decision: ItemDecision, names: dict[str, str]) -> list[dict[str, Any]]:
    if not decision.record_id:
        return []
    people = [{"id": p, "name": names.get(p, ""), "object": "Lead" if p.startswith("00Q") else "Contact",
               "url": record_url(user, "Lead" if p.startswith("00Q") else "Contact", p)} for p in decision.people]
    return [{"object": decision.object or "EmailMessage", "id": decision.record_id,
             "url": record_url(user, decision.object or "EmailMessage", decision.record_id), "people": people}]


def _from_salesforce(crm: Crm, query: ItemQuery) -> ItemDecision | None:
    """The item as Salesforce holds it (one lookup), as a decision, or None."""
    if query.message_id:
        lookup = crm.lookup((), [query.message_id], ())
        if query.message_id not in lookup.existing_emails:
            return None
        obj = "EmailMessage" if crm.capabilities().enhanced_email else "Task"
        return ItemDecision(decision=ALREADY_LOGGED, at=0.0, object=obj,
                            record_id=lookup.email_ids.get(query.message_id, ""))
    existing = crm.existing_events([query.event_uid]).get(query.event_uid)
    if existing is None:
        return None
    return ItemDecision(decision=ALREADY_LOGGED, at=0.0, object="Event", record_id=existing.id,
                        people=sorted(existing.related_ids))


def _unseen(settings: Settings, store: Store, mailbox: SyncMailbox, query: ItemQuery) -> dict[str, Any]:
    """The answer for an item neither the trail nor Salesforce knows."""
    if mailbox.state is SyncState.PAUSED:
        return {"status": "not_yet", "reason": "paused", "next_run": None}
    if mailbox.state is not SyncState.RUNNING:
        return {"status": "not_logged", "reason": "sync_off", "next_run": None}
    if query.item_date is not None and mailbox.activated_at:
        days = settings.BACKFILL_DAYS if query.kind == "email" else EVENT_LOOKBACK_DAYS
        floor = mailbox.activated_at - timedelta(days=days).total_seconds()
        if query.item_date.timestamp() < floor:
            return {"status": "not_logged", "reason": "too_old", "next_run": None,
                    "window_start": iso(floor)}
    upcoming = store.schedule.next_of(mailbox.id)
    return {"status": "not_yet", "reason": "", "next_run": iso(upcoming) if upcoming else None}


def item_status(store: Store, settings: Settings, clients: Clients, mailbox: SyncMailbox, user: User,
                query: ItemQuery) -> dict[str, Any]:
    """The pane's answer for one item of the person's own sync mailbox."""
    decision = store.trail.get(mailbox.id, query.identifier)
    source = "trail" if decision is not None else ""
    crm: Crm | None = None
    try:
        if decision is None or decision.decision not in (LOGGED, ALREADY_LOGGED, FILTERED, REFUSED):
            crm = crm_for(settings, store, clients, user, lambda usage: None)
            decision = _from_salesforce(crm, query)
            source = "salesforce" if decision is not None else ""
        names: dict[str, str] = {}
        if decision is not None and decision.people:
            crm = crm or crm_for(settings, store, clients, user, lambda usage: None)
            names = crm.names(decision.people)
    finally:
        if crm is not None:
            crm.close()
    body: dict[str, Any] = {"kind": query.kind, "source": source or None, "sync_state": mailbox.state.value}
    if decision is None:
        body.update(_unseen(settings, store, mailbox, query))
    elif decision.decision in (LOGGED, ALREADY_LOGGED):
        body.update(status="logged", reason="", at=iso(decision.at) if decision.at else None,
                    by_this_mailbox=decision.decision == LOGGED, records=_records(user, decision, names))
    elif decision.decision == REFUSED:
        body.update(status="not_logged", reason="refused", salesforce_code=decision.reason,
                    at=iso(decision.at))
    else:
        body.update(status="not_logged", reason=decision.reason, at=iso(decision.at))
    body.setdefault("records", [])
    body["can_log_now"] = body["status"] != "logged" and body.get("reason") not in FIRM_REASONS \
        and mailbox.state in (SyncState.RUNNING, SyncState.PAUSED)
    body["checked_at"] = iso(time.time())
    return body
