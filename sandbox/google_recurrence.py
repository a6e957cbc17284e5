"""Recurring events in the fake Google Calendar: a master's instances, with exceptions and cancelled ones.

Kept from Google Calendar: a recurring event (the master) carries ``recurrence`` (an ``RRULE`` with
``FREQ=DAILY`` or ``WEEKLY``, ``INTERVAL``, ``COUNT`` or ``UNTIL``), expanded in the master's
``start.timeZone`` (wall-clock steps, so a weekly 10:00 stays 10:00 across a DST change). Each
instance has the id ``<masterId>_<YYYYMMDDTHHMMSSZ>`` (UTC of its original start; ``_<YYYYMMDD>`` for
an all-day series), ``recurringEventId``, ``originalStartTime`` and the master's ``iCalUID``. A
moved or retitled instance is an exception (its own fields over the master's); a cancelled
instance is reported as Google reports a cancelled exception, with only ``id``, ``status``,
``recurringEventId`` and ``originalStartTime``; the instances of a deleted master with only their id.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

# A series without an end is expanded this far ahead when the request sets no timeMax (and for
# sync rounds, which take none): the fake's stand-in for Google's own expansion horizon.
HORIZON_DAYS = 365
MAX_INSTANCES = 730


@dataclass
class Override:
    """One instance's own state: changed fields (an exception), or cancelled."""

    seq: int
    fields: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False


@dataclass(frozen=True)
class Rule:
    """What the fake understands of an RRULE."""

    step_days: int
    count: int | None = None
    until: datetime | None = None


def parse_rule(recurrence: list[str]) -> Rule:
    """The first RRULE of ``recurrence`` (DAILY or WEEKLY, INTERVAL, COUNT, UNTIL)."""
    line = next((r for r in recurrence if r.upper().startswith("RRULE:")), "")
    parts = dict(p.split("=", 1) for p in line[len("RRULE:"):].split(";") if "=" in p)
    unit = {"DAILY": 1, "WEEKLY": 7}[parts.get("FREQ", "WEEKLY").upper()]
    until = None
    if "UNTIL" in parts:
        raw = parts["UNTIL"]
        until = (datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) if "T" in raw
                 else datetime.strptime(raw, "%Y%m%d").replace(hour=23, minute=59, second=59, tzinfo=UTC))
    return Rule(unit * int(parts.get("INTERVAL", "1")), int(parts["COUNT"]) if "COUNT" in parts else None, until)


def moment_of(value: dict[str, str], default: tzinfo = UTC) -> tuple[datetime, bool]:
    """(the moment, all day) of a ``start``/``end``/``originalStartTime``; a date is a day in ``default``
    (the calendar's zone) unless it names its own."""
    zone = ZoneInfo(value["timeZone"]) if value.get("timeZone") else default
    if "date" in value:
        day = date.fromisoformat(value["date"])
        return datetime(day.year, day.month, day.day, tzinfo=zone), True
    moment = datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00"))
    return (moment.astimezone(zone) if moment.tzinfo else moment.replace(tzinfo=zone)), False


def when(moment: datetime, all_day: bool) -> dict[str, str]:
    """A ``start``/``end`` as Google renders it: in the moment's own zone, with its offset."""
    zone = getattr(moment.tzinfo, "key", None)
    if all_day:
        return {"date": moment.date().isoformat()}
    if zone is None or zone == "UTC":
        return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "timeZone": "UTC"}
    return {"dateTime": moment.isoformat(timespec="seconds"), "timeZone": str(zone)}


def instance_id(master_id: str, original: datetime, all_day: bool) -> str:
    """The id Google gives the instance originally at ``original``."""
    stamp = original.strftime("%Y%m%d") if all_day else original.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{master_id}_{stamp}"


def original_starts(master: dict[str, Any], horizon: datetime) -> list[datetime]:
    """Every original start of the series up to ``horizon`` (cancelled ones included)."""
    first, _ = moment_of(master["start"])
    rule = parse_rule(master.get("recurrence") or [])
    wall = first.replace(tzinfo=None)
    starts: list[datetime] = []
    while len(starts) < MAX_INSTANCES:
        moment = (wall + timedelta(days=rule.step_days * len(starts))).replace(tzinfo=first.tzinfo)
        if rule.count is not None and len(starts) >= rule.count:
            break
        if (rule.until is not None and moment > rule.until) or moment > horizon:
            break
        starts.append(moment)
    return starts


def instance(master: dict[str, Any], original: datetime, override: Override | None, deleted: bool) -> dict[str, Any]:
    """The instance of ``master`` originally at ``original`` as events.list renders it."""
    start, _ = moment_of(master["start"])
    all_day = "date" in master["start"]
    end, _ = moment_of(master["end"])
    ident = instance_id(str(master["id"]), original, all_day)
    if deleted:
        return {"kind": "calendar#event", "id": ident, "status": "cancelled"}
    original_time = when(original, all_day)
    if override is not None and override.cancelled:
        return {"kind": "calendar#event", "id": ident, "status": "cancelled", "recurringEventId": master["id"],
                "originalStartTime": original_time}
    data = {k: copy.deepcopy(v) for k, v in master.items() if k != "recurrence"}
    data.update(id=ident, recurringEventId=master["id"], originalStartTime=original_time,
                start=when(original, all_day), end=when(original + (end - start), all_day))
    if override is not None:
        data.update(copy.deepcopy(override.fields))
    return data
