"""What Salesforce refused in a write: quarantined for good, or believed "not now" a few times.

A record refused as "not now" (a locked row, a server error) fails the run as transient before the
cursors move, so the retried job writes it; one refused that way on every attempt is quarantined
like any other refusal, so one record cannot hold a mailbox back forever.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from backend.connectors.crm import WritePlan, WriteResult
from backend.errors import Unavailable
from backend.store import Store
from backend.sync.budget import iso
from backend.sync.counts import RunCounts

log = logging.getLogger(__name__)

# Runs that may meet a record Salesforce refuses as "not now" (a locked row, a server error) before
# it is quarantined instead: RQ's retries plus a few scheduled runs.
MAX_TRANSIENT_ATTEMPTS = 8


def plan_keys(plan: WritePlan) -> list[str]:
    """The keys of the items a plan writes (created, changed, cancelled or repaired)."""
    return [*(d.key for d in plan.emails), *(d.key for d in plan.new_events),
            *(e.key for e, _ in plan.changed_events), *(e.key for e, _ in plan.cancelled_events),
            *(r.draft.key for r in plan.sender_repairs), *(r.event.key for r in plan.removed_relations)]


def settle_refusals(store: Store, mailbox_id: str, result: WriteResult, counts: RunCounts,
                    written: list[str] | None = None) -> None:
    """Quarantine what Salesforce refused; raise ``Unavailable`` when some records may succeed later.

    ``written`` are the keys the write carried: those not refused "not now" this time start their
    count afresh (a lock met once a month must not add up to a quarantine).
    """
    refused = list(result.rejected)
    transient = result.transient
    if written:
        again = {r.key for r in transient}
        store.retries.forget_counted(mailbox_id, [k for k in written if k not in again])
        # Quarantined by an earlier run that then stopped before the page's cursor moved, and
        # written by this rerun of the page: the entry is no longer true.
        failed = again | {r.key for r in refused}
        store.quarantine.release(mailbox_id, [k for k in written if k not in failed])
    if transient:
        attempts = store.retries.count(mailbox_id, [r.key for r in transient])
        exhausted = [r for r in transient if attempts[r.key] >= MAX_TRANSIENT_ATTEMPTS]
        if len(exhausted) == len(transient):
            # Quarantined only by a run that then goes on: while others of the batch fail the run
            # anyway, the rerun reads them all again and may write these too (quarantined and
            # written would both be said of them).
            transient = []
            store.retries.forget(mailbox_id, [r.key for r in exhausted])
            refused += [dataclasses.replace(r, reason=f"{r.reason} (on {MAX_TRANSIENT_ATTEMPTS} attempts)")
                        for r in exhausted]
    now = iso(time.time())
    entries = []
    for rejected in refused:
        if rejected.object.endswith("Relation"):
            counts.relations_quarantined += 1
        else:
            counts.quarantined += 1
        entries.append({"key": rejected.key, "object": rejected.object, "reason": rejected.reason, "at": now})
    store.quarantine.add(mailbox_id, entries)
    if transient:
        # Not quarantined and not lost: failing here (before the cursors move) has the job retried,
        # and the rerun finds what did commit through the usual dedup.
        first = transient[0].reason.split(":", 1)[0]
        log.warning("salesforce refused records for now mid=%s count=%d code=%s", mailbox_id, len(transient),
                    first)
        raise Unavailable(f"Salesforce could not save {len(transient)} record(s) just now ({first}); "
                          "sync tries again shortly.")
