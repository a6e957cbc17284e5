"""The per-item decision trail of a run: what became of each email and meeting, without its content.

The run tells the recorder what it decided (filtered with a reason, already in Salesforce, no
Contact or Lead, written with its record id, refused with Salesforce's error code); the recorder
keeps them until the batch's writes are done and saves them through ``store.trail`` (keyed hash
of the Message-ID / UID, codes, ids, times). Emails are keyed by Message-ID, meetings by their dedup
key: the UID, and ``UID@start`` for one occurrence of a series (never the series UID alone, which
would let the last occurrence noted answer for all of them). A single meeting's key is its UID, as
it always was; an occurrence was always noted under its own key too, so older entries still answer.
"""

from __future__ import annotations

import time

from backend.connectors.crm import EventDraft, Lookup, WritePlan, WriteResult
from backend.connectors.mailbox import EmailItem, EventItem
from backend.store.trail import ItemDecision, ItemTrailRepo
from backend.sync.filters import Reason

LOGGED = "logged"
ALREADY_LOGGED = "already_logged"
FILTERED = "filtered"
REFUSED = "refused"


def refusal_code(reason: str) -> str:
    """Salesforce's error code out of a refusal reason ("FIELD_X: words" -> "FIELD_X")."""
    return reason.split(":", 1)[0].strip().upper()


class TrailRecorder:
    """Collects one run's decisions per item and saves them batch by batch."""

    def __init__(self, repo: ItemTrailRepo, mailbox_id: str, trigger: str, email_object: str = "EmailMessage") -> None:
        self.repo = repo
        self.mailbox_id = mailbox_id
        self.trigger = trigger
        # Emails are EmailMessage records with Enhanced Email, Task records without it.
        self.email_object = email_object
        self._pending: dict[str, ItemDecision] = {}
        self._people: dict[str, list[str]] = {}
        self._items: dict[str, EmailItem | EventItem] = {}

    def _note(self, item: EmailItem | EventItem, decision: ItemDecision) -> None:
        self._pending[item.dedup_key] = decision

    def _decision(self, decision: str, **fields: object) -> ItemDecision:
        return ItemDecision(decision=decision, at=time.time(), trigger=self.trigger, **fields)  # type: ignore[arg-type]

    def filtered(self, item: EmailItem | EventItem, reason: Reason) -> None:
        """The filters (or matching) kept ``item`` out for ``reason``."""
        self._note(item, self._decision(FILTERED, reason=reason.value))

    def planned(self, emails: list[EmailItem], events: list[EventItem], lookup: Lookup, plan: WritePlan) -> None:
        """What the batch's plan says of each item: already in Salesforce, nobody matched, or to be written."""
        new_emails = {d.key: d for d in plan.emails}
        drafts: dict[str, EventDraft] = {d.key: d for d in plan.new_events}
        drafts.update({d.key: d for _, d in plan.changed_events})
        for email in emails:
            key = email.dedup_key
            if key in new_emails:
                self._people[key] = list(new_emails[key].people_ids)
                self._items[key] = email
            elif key in lookup.existing_emails:
                self._note(email, self._decision(ALREADY_LOGGED, object=self.email_object,
                                                 record_id=lookup.email_ids.get(key, "")))
            else:
                self._note(email, self._decision(FILTERED, reason=Reason.NO_MATCH.value))
        for event in events:
            key = event.dedup_key
            existing = lookup.existing_events.get(key)
            if key in drafts:
                self._people[key] = list(drafts[key].people_ids)
                self._items[key] = event
                if existing is not None:
                    self._note(event, self._decision(ALREADY_LOGGED, object="Event", record_id=existing.id,
                                                     people=self._people[key]))
            elif existing is not None:
                self._note(event, self._decision(ALREADY_LOGGED, object="Event", record_id=existing.id,
                                                 people=sorted(existing.related_ids)))
            elif event.is_cancelled:
                self._note(event, self._decision(FILTERED, reason=Reason.CANCELLED.value))
            else:
                self._note(event, self._decision(FILTERED, reason=Reason.NO_MATCH.value))

    def written(self, plan: WritePlan, result: WriteResult) -> None:
        """What Salesforce did with a plan's new records: created (with ids) or refused (with a code)."""
        refused = {r.key: r for r in [*result.rejected, *result.transient] if not r.object.endswith("Relation")}
        for key in [*(d.key for d in plan.emails), *(d.key for d in plan.new_events)]:
            item = self._items.get(key)
            if item is None:
                continue
            kind = "Event" if isinstance(item, EventItem) else self.email_object
            if key in refused:
                self._note(item, self._decision(REFUSED, reason=refusal_code(refused[key].reason), object=kind))
            elif key in result.written_ids:
                self._note(item, self._decision(LOGGED, object=kind, record_id=result.written_ids[key],
                                                people=self._people.get(key, [])))
            elif key in result.written_keys:
                # Written meanwhile by a colleague's run: logged once, by them.
                self._note(item, self._decision(ALREADY_LOGGED, object=kind))

    def save(self) -> None:
        """Save what was collected (after the batch's writes)."""
        pending, self._pending = self._pending, {}
        self._people.clear()
        self._items.clear()
        self.repo.record(self.mailbox_id, pending.items())
