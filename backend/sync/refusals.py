"""What Salesforce refused in a write: quarantined for good, or believed "not now" a few times.

A record refused as "not now" (a locked row, a server error) fails the run as transient before the
cursors move, so the retried job writes it; one refused that way on every attempt is quarantined
like any other refusal, so one record cannot hold a mailbox back forever.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from backend.connectors.crm import WriteResult
from backend.errors import Unavailable
from backend.store import Store
from backend.sync.budget import iso
from backend.sync.counts import RunCounts

log = logging.getLogger(__name__)

# Runs that may meet a record Salesforce refuses as "not now" (a locked row, a server error) before
# it is quarantined instead: RQ's retries plus a few scheduled runs.
MAX_TRANSIENT_ATTEMPTS = 8


def settle_refusals(store: Store, mailbox_id: str, result: WriteResult, counts: RunCounts) -> None:
    """Quarantine what Salesforce refused; raise ``Unavailable`` when some records may succeed later."""
    refused = list(result.rejected)
    transient = result.transient
    if transient:
        attempts = store.retries.count(mailbox_id, [r.key for r in transient])
        exhausted = [r for r in transient if attempts[r.key] >= MAX_TRANSIENT_ATTEMPTS]
        transient = [r for r in transient if attempts[r.key] < MAX_TRANSIENT_ATTEMPTS]
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
