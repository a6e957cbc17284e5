"""Recurring series in the fake Exchange: a master's occurrences, with exceptions and deleted ones.

A master (``item_type="RecurringMaster"``) repeats every ``interval_days`` from its start until its
``recurrence_end``. Like Exchange, a FindItem with a ``CalendarView`` lists the occurrences inside
the view (ids of their own, the master's UID, ``OriginalStart``), with a moved or retitled one as an
``Exception`` and a deleted one left out; the master lists ``ModifiedOccurrences`` and
``DeletedOccurrences``. Changing or deleting one occurrence is an Update of the master in the sync.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from sandbox.ews.state import EwsItem

OCCURRENCE_PREFIX = "OCC"
# A series with no end is expanded this far (the fake's stand-in for "as far as the view goes").
MAX_OCCURRENCES = 500


def occurrence_id(master: EwsItem, index: int) -> str:
    """The id of occurrence ``index`` (1-based) of ``master``."""
    return f"{OCCURRENCE_PREFIX}{index}_{master.id}"


def parse_occurrence_id(item_id: str) -> tuple[str, int] | None:
    """(master id, index) of an occurrence id, or None."""
    if not item_id.startswith(OCCURRENCE_PREFIX) or "_" not in item_id:
        return None
    index, _, master = item_id[len(OCCURRENCE_PREFIX):].partition("_")
    return (master, int(index)) if index.isdigit() else None


def original_starts(master: EwsItem) -> list[datetime]:
    """Every original start of the series (deleted ones included)."""
    if master.start is None:
        return []
    starts: list[datetime] = []
    moment = master.start
    while len(starts) < MAX_OCCURRENCES:
        if master.recurrence_end is not None and moment.date() > master.recurrence_end:
            break
        starts.append(moment)
        moment = moment + timedelta(days=master.interval_days)
    return starts


def occurrence(master: EwsItem, index: int) -> EwsItem | None:
    """Occurrence ``index`` of ``master`` as an item (None when deleted or past the end)."""
    starts = original_starts(master)
    if not 1 <= index <= len(starts) or master.start is None or master.end is None:
        return None
    original = starts[index - 1]
    if original in master.deleted_occurrences:
        return None
    changes: dict[str, Any] = dict(master.exceptions.get(original, {}))
    length = master.end - master.start
    item = dataclasses.replace(
        master, id=occurrence_id(master, index), changekey="", start=original, end=original + length,
        item_type="Exception" if changes else "Occurrence", original_start=original, recurrence_end=None,
        deleted_occurrences=[], exceptions={})
    for name, value in changes.items():
        setattr(item, name, value)
    return item


def in_view(master: EwsItem, start: datetime, end: datetime) -> list[EwsItem]:
    """The occurrences and exceptions of ``master`` overlapping ``start``..``end``."""
    found = []
    for index in range(1, len(original_starts(master)) + 1):
        item = occurrence(master, index)
        if item is not None and item.start is not None and item.end is not None and item.end > start \
                and item.start < end:
            found.append(item)
    return found


def modified(master: EwsItem) -> list[EwsItem]:
    """The exceptions of ``master`` (its ModifiedOccurrences)."""
    starts = original_starts(master)
    return [o for o in (occurrence(master, starts.index(s) + 1) for s in master.exceptions if s in starts)
            if o is not None]
