"""What a batch writes: the items Salesforce does not hold yet, as one write plan.

Pure logic over a batch, the CRM's lookup of it and what the run already handled (``seen``): no
I/O here, so the choices (duplicate, repair, new, changed, cancelled, filtered) are tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.connectors.crm import Lookup, RelationRemoval, SenderRepair, WritePlan, draft_relations
from backend.connectors.mailbox import EmailItem, EventItem
from backend.connectors.salesforce.records import joinable
from backend.sync import mapping
from backend.sync.counts import RunCounts
from backend.sync.filters import Filters, Reason


def cancelled_action(preferences: Mapping[str, Any]) -> str:
    """What a person's sync preferences do with a cancelled meeting: "delete" or "mark"."""
    return "delete" if str(preferences.get("cancelled_events") or "mark") == "delete" else "mark"


def plan_emails(plan: WritePlan, emails: list[EmailItem], lookup: Lookup, filters: Filters, owner: str,
                seen: set[str], counts: RunCounts) -> None:
    """Add the batch's new emails (and sender repairs of emails logged without one) to ``plan``."""
    for email in emails:
        key = email.dedup_key
        if key in lookup.existing_emails or key in seen:
            counts.duplicates += 1
            if key in lookup.email_ids and key not in seen:
                # Logged by an earlier run that broke before writing its relations (a sender row
                # refused twice as transient), or by a colleague before a Contact existed: every
                # relation this run would have written and the email lacks is added.
                draft = mapping.email_draft(email, lookup.people, filters, owner)
                present = lookup.email_relations.get(key, frozenset())
                # The owner as a recipient is the writer's own relation: a colleague's run that
                # finds the email logged does not add itself (the sender it does add, when missing).
                rows = tuple(pair for pair in (draft_relations(draft) if draft is not None else [])
                             if pair not in present and (pair[0] != owner or pair[1] == "FromAddress"))
                if draft is not None and rows:
                    plan.sender_repairs.append(SenderRepair(lookup.email_ids[key], draft, rows))
                    seen.add(key)
            continue
        draft = mapping.email_draft(email, lookup.people, filters, owner)
        if draft is None:
            counts.filter_out(Reason.NO_MATCH)
            continue
        seen.add(key)
        counts.matched += 1
        plan.emails.append(draft)


def plan_events(plan: WritePlan, events: list[EventItem], lookup: Lookup, filters: Filters, action: str,
                seen: set[str], counts: RunCounts, ours: Mapping[str, frozenset[str]] | None = None) -> None:
    """Add the batch's new, changed and cancelled meetings to ``plan``.

    ``ours`` are the people this product related to each meeting: an attendee removed from a
    meeting loses the relation only when it is one of them (a relation added by hand stays).
    """
    for event in events:
        key = event.dedup_key
        existing = lookup.existing_events.get(key)
        if event.is_cancelled:
            if existing is None:
                counts.filter_out(Reason.CANCELLED)
            else:
                counts.matched += 1
                plan.cancelled_events.append((existing, action))
            continue
        if existing is None and key in seen:
            counts.duplicates += 1
            continue
        draft = mapping.event_draft(event, lookup.people, filters, allow_unmatched=existing is not None)
        if draft is None:
            counts.filter_out(Reason.NO_MATCH)
            continue
        counts.matched += 1
        seen.add(key)
        if existing is None:
            plan.new_events.append(draft)
            continue
        plan.changed_events.append((existing, draft))
        gone = (existing.related_ids & (ours or {}).get(key, frozenset())) - set(draft.people_ids)
        if gone:
            plan.removed_relations.append(RelationRemoval(existing, tuple(sorted(gone)),
                                                          draft.people_ids[0] if draft.people_ids else ""))


def relation_changes(plan: WritePlan, written: set[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(people related, people unrelated) by meeting key after ``plan`` was written (``written``: keys now held)."""
    added: dict[str, list[str]] = {d.key: list(d.people_ids) for d in plan.new_events if d.key in written}
    leaving = {r.event.id: set(r.person_ids) for r in plan.removed_relations}
    for existing, draft in plan.changed_events:
        new = [p for p in draft.people_ids if p not in existing.related_ids]
        # Only those the writer could relate (Shared Activities' rule beside who stays): one it
        # skipped and recorded as ours would be unrelated later, though someone related them by hand.
        new = joinable(set(existing.related_ids) - leaving.get(existing.id, set()), new)
        if new:
            added[existing.key] = new
    removed = {r.event.key: list(r.person_ids) for r in plan.removed_relations}
    return added, removed
