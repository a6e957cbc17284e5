"""What a batch writes: the items Salesforce does not hold yet, as one write plan.

Pure logic over a batch, the CRM's lookup of it and what the run already handled (``seen``): no
I/O here, so the choices (duplicate, repair, new, changed, cancelled, filtered) are tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.connectors.crm import Lookup, SenderRepair, WritePlan, draft_relations
from backend.connectors.mailbox import EmailItem, EventItem
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
                seen: set[str], counts: RunCounts) -> None:
    """Add the batch's new, changed and cancelled meetings to ``plan``."""
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
        else:
            plan.changed_events.append((existing, draft))
