"""What one run did, as counts (never content)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from backend.connectors.crm import WriteResult
from backend.connectors.mailbox import ChangePage
from backend.sync.filters import Reason

# Counts a run takes over from a write's result under the same name.
_SAME_NAME = ("emails_written", "events_written", "events_updated", "events_unchanged", "relations_written",
              "relations_removed",
              "relations_repaired", "duplicates")


@dataclass
class RunCounts:
    """What a run did (no content)."""

    read: int = 0
    read_emails: int = 0
    read_events: int = 0
    deletions: int = 0
    # Pages the connector re-read from the window because a cursor expired (dedup absorbs them).
    resynced_pages: int = 0
    filtered: int = 0
    filtered_by: Counter[str] = field(default_factory=Counter)
    matched: int = 0
    written: int = 0
    emails_written: int = 0
    events_written: int = 0
    events_updated: int = 0
    events_cancelled: int = 0
    events_unchanged: int = 0
    relations_written: int = 0
    # Meeting relations removed: attendees who left a meeting, that this product had related.
    relations_removed: int = 0
    # Sender relations added to emails an earlier, broken run left without one.
    relations_repaired: int = 0
    duplicates: int = 0
    quarantined: int = 0
    relations_quarantined: int = 0
    # Times this run waited for a colleague's run writing the same emails.
    claim_waits: int = 0
    # Items whose recipient (or attendee) list the connector cut at MAX_RECIPIENTS, by folder, and
    # how many addresses were left out: matching saw only the first ones.
    recipients_cut: int = 0
    recipients_cut_by: Counter[str] = field(default_factory=Counter)
    recipients_dropped: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready values."""
        data = {k: (dict(sorted(v.items())) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()}
        return data

    def add_cuts(self, pages: list[ChangePage]) -> None:
        """Count the items of ``pages`` whose recipient lists were cut, and where (the folder)."""
        for page in pages:
            cuts = [e.recipients_cut for e in page.emails] + [e.recipients_cut for e in page.events]
            for cut in (c for c in cuts if c):
                self.recipients_cut += 1
                self.recipients_cut_by[page.folder.value] += 1
                self.recipients_dropped += cut

    def filter_out(self, reason: Reason, count: int = 1) -> None:
        """Count filtered items (one by default)."""
        self.filtered += count
        self.filtered_by[reason.value] += count

    def add_writes(self, result: WriteResult) -> None:
        """Add what one write plan did (the one place a CRM result becomes run counts)."""
        for name in _SAME_NAME:
            setattr(self, name, getattr(self, name) + getattr(result, name))
        self.written += result.emails_written + result.events_written
        self.events_cancelled += result.events_deleted + result.events_marked
