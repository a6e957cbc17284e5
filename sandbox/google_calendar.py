"""A fake Google Calendar API (v3) at the wire protocol: ``events.list`` with sync tokens and recurring events.

Served on loopback https under ``/calendar/v3`` of the fake Google host; the product reaches it
only through ``GOOGLE_CALENDAR_API_URL``. Kept from Google Calendar: a full round (``timeMin``,
optionally ``timeMax``) pages through ``nextPageToken`` and ends with a ``nextSyncToken`` on its
last page only; a ``syncToken`` round returns what changed since, deleted events always included
with ``status: "cancelled"`` and only their id; ``syncToken`` cannot be combined with
``timeMin``/``timeMax``/``q``/``orderBy``/``updatedMin``/``iCalUID`` (400); ``orderBy=startTime``
needs ``singleEvents=true`` (400); an expired token answers 410 ``fullSyncRequired``
(:meth:`FakeCalendarState.expire_sync_tokens`). A meeting the organiser cancelled stays on an
invitee's calendar with ``status: "cancelled"`` and its details.

Recurring events (:mod:`sandbox.google_recurrence`): with ``singleEvents=true`` a series is listed
as its instances (overlapping ``timeMin``..``timeMax``), each with its own id, ``recurringEventId``,
``originalStartTime`` and the series' ``iCalUID``; without it, as the master (with ``recurrence``)
and its exceptions. A change to the master reports every instance in a sync round; a change to one
instance, that instance only.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from flask import Flask, Response, request

from sandbox.google import CALENDAR_EVENTS_READONLY, FakeGoogleState, TokenInfo
from sandbox.google_faults import Faults, google_error
from sandbox.google_recurrence import HORIZON_DAYS, Override, instance, instance_id, moment_of, original_starts, when

Answer = tuple[int, dict[str, str], Any]
_NOT_WITH_SYNC_TOKEN = ("timeMin", "timeMax", "q", "orderBy", "updatedMin", "iCalUID")
_NAMES = {"subject": "summary", "body": "description"}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _attendees(values: list[str], own: str) -> list[dict[str, Any]]:
    return [{"email": a.lower(), "responseStatus": "needsAction", **({"self": True} if a.lower() == own else {})}
            for a in values]


@dataclass
class GEvent:
    """An event in a fake calendar: a single meeting, or the master of a recurring series."""

    id: str
    data: dict[str, Any]
    seq: int
    deleted: bool = False
    # A series' instances with a state of their own, by instance id.
    overrides: dict[str, Override] = field(default_factory=dict)

    @property
    def recurring(self) -> bool:
        """True for the master of a series."""
        return bool(self.data.get("recurrence"))


@dataclass
class Entry:
    """One item a listing may return: its change number, what it renders as, when it is."""

    id: str
    seq: int
    body: dict[str, Any]
    start: datetime
    end: datetime


@dataclass
class GCalendar:
    """One account's primary calendar."""

    email: str
    events: dict[str, GEvent] = field(default_factory=dict)
    seq: int = 0
    # Bumped by expire_sync_tokens(): tokens of an older generation answer 410.
    generation: int = 0
    # The calendar's time zone (events.list says it; all-day events are days in it).
    time_zone: str = "UTC"


@dataclass
class FakeCalendarState:
    """Calendars of the fake Google Calendar; tests seed and change them directly."""

    google: FakeGoogleState
    base_url: str = ""
    calendars: dict[str, GCalendar] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def calendar(self, address: str) -> GCalendar:
        """The primary calendar of an account (created on first use)."""
        user = self.google.find_user(address)
        assert user is not None, f"unknown Google account {address}"
        with self.lock:
            if user.email not in self.calendars:
                self.calendars[user.email] = GCalendar(user.email)
            return self.calendars[user.email]

    def _bump(self, cal: GCalendar) -> int:
        cal.seq += 1
        return cal.seq

    def _find(self, event_id: str) -> tuple[GCalendar, GEvent, str]:
        """(calendar, event, instance id or "") of an event id or of a series instance's id."""
        with self.lock:
            for cal in self.calendars.values():
                if event_id in cal.events:
                    return cal, cal.events[event_id], ""
                master = cal.events.get(event_id.rpartition("_")[0])
                if master is not None and master.recurring:
                    return cal, master, event_id
        raise KeyError(event_id)

    def add_event(self, address: str, *, subject: str = "Meeting", start: datetime, end: datetime,
                  organizer: str = "", attendees: list[str] | None = None, uid: str | None = None, body: str = "",
                  sensitivity: str = "normal", location: str = "", all_day: bool = False,
                  recurrence: list[str] | None = None) -> str:
        """Put an event in the calendar (a series with ``recurrence``, e.g. ``["RRULE:FREQ=WEEKLY;COUNT=9"]``).

        ``start``/``end`` are kept in their own zone (a ZoneInfo), as the ``timeZone`` the event was made in.
        """
        cal = self.calendar(address)
        organizer = (organizer or cal.email).lower()
        event_id = uuid.uuid4().hex[:26]
        now = _rfc3339(datetime.now(tz=UTC))
        data: dict[str, Any] = {
            "kind": "calendar#event", "id": event_id, "status": "confirmed", "created": now, "updated": now,
            "summary": subject, "description": body, "location": location,
            "creator": {"email": organizer}, "organizer": {"email": organizer, **({"self": True} if organizer ==
                                                                                 cal.email else {})},
            "start": when(start, all_day), "end": when(end, all_day),
            "iCalUID": uid or f"{event_id}@google.com", "sequence": 0,
            "attendees": _attendees(attendees or [], cal.email),
            "visibility": {"private": "private", "confidential": "confidential"}.get(sensitivity, "default"),
            "eventType": "default",
        }
        if recurrence:
            data["recurrence"] = list(recurrence)
        with self.lock:
            cal.events[event_id] = GEvent(event_id, data, self._bump(cal))
        return event_id

    def instance_id(self, master_id: str, original_start: datetime) -> str:
        """The id of a series' instance originally at ``original_start``."""
        _, master, _ = self._find(master_id)
        return instance_id(master_id, original_start, "date" in master.data["start"])

    def update_event(self, event_id: str, **changes: Any) -> None:
        """Change an event, a whole series (its master's id) or one instance (an exception).

        Takes ``subject``, ``start``, ``end``, ``attendees``, ``body``, ``location`` or raw fields.
        """
        cal, event, instance = self._find(event_id)
        with self.lock:
            target = event.data
            if instance:
                held = event.overrides.get(instance) or Override(0)
                event.overrides[instance] = held
                target = held.fields
            all_day = "date" in event.data["start"]
            for name, value in changes.items():
                if name in ("start", "end") and isinstance(value, datetime):
                    target[name] = when(value, all_day)
                elif name == "attendees":
                    target["attendees"] = _attendees(value, cal.email)
                else:
                    target[_NAMES.get(name, name)] = value
            target["sequence"] = int(target.get("sequence", event.data.get("sequence", 0))) + 1
            target["updated"] = _rfc3339(datetime.now(tz=UTC))
            if instance:
                event.overrides[instance].seq = self._bump(cal)
            else:
                event.seq = self._bump(cal)

    def cancel_event(self, event_id: str) -> None:
        """The organiser cancelled the meeting: it stays on this calendar with status cancelled.

        One instance of a series: a cancelled exception (what deleting "this event" of a series does).
        """
        if self._find(event_id)[2]:
            self.delete_event(event_id)
        else:
            self.update_event(event_id, status="cancelled")

    def delete_event(self, event_id: str) -> None:
        """Delete the event (a series: every instance; one instance: a cancelled exception)."""
        cal, event, instance = self._find(event_id)
        with self.lock:
            if instance:
                held = event.overrides.setdefault(instance, Override(0))
                held.cancelled = True
                held.seq = self._bump(cal)
            else:
                event.deleted = True
                event.seq = self._bump(cal)

    def expire_sync_tokens(self, address: str | None = None) -> None:
        """Make every sync and page token handed out so far answer 410 Gone."""
        with self.lock:
            for cal in self.calendars.values():
                if address is None or cal.email == address.lower():
                    cal.generation += 1

    # --- events.list ------------------------------------------------------------------------------

    @staticmethod
    def _token(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")

    @staticmethod
    def _untoken(raw: str) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return decoded

    def handle(self, url: str, info: TokenInfo | None) -> Answer:
        """One Calendar request: (status, headers, JSON body)."""
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        injected = self.faults.check(parts.path)
        if injected is not None:
            return injected
        if info is None:
            return 401, {}, google_error(401, "authError", "Request had invalid authentication credentials.")
        if CALENDAR_EVENTS_READONLY not in info.scopes:
            return 403, {}, google_error(403, "insufficientPermissions", "Request had insufficient authentication "
                                                                         "scopes.")
        segments = parts.path.strip("/").split("/")
        if len(segments) != 5 or segments[:3] != ["calendar", "v3", "calendars"] or segments[4] != "events":
            return 404, {}, google_error(404, "notFound", "Not Found")
        if segments[3] not in ("primary", info.email):
            return 404, {}, google_error(404, "notFound", "Not Found")
        cal = self.calendar(info.email)
        self.faults.spend(cal.email, 1)
        gone = 410, {}, google_error(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is "
                                                              "required.", "GONE")
        try:
            size = max(1, min(int(query.get("maxResults", "250")), 2500))
        except ValueError:
            return 400, {}, google_error(400, "invalid", "Invalid maxResults")
        single = query.get("singleEvents") == "true"
        with self.lock:
            if query.get("pageToken"):
                try:
                    token = self._untoken(query["pageToken"])
                except ValueError:
                    return 400, {}, google_error(400, "invalid", "Invalid page token")
                if token.get("g") != cal.generation:
                    return gone
            elif query.get("syncToken"):
                if any(query.get(name) for name in _NOT_WITH_SYNC_TOKEN):
                    return 400, {}, google_error(400, "invalid", "Sync token cannot be used with timeMin, timeMax or "
                                                                 "other filters.")
                try:
                    sync = self._untoken(query["syncToken"])
                except ValueError:
                    return 410, {}, gone[2]
                if sync.get("g") != cal.generation:
                    return gone
                token = {"g": cal.generation, "m": "sync", "s": sync["u"], "u": cal.seq, "o": 0, "se": single}
            else:
                if not single and query.get("orderBy") == "startTime":
                    return 400, {}, google_error(400, "badRequest", "The requested ordering is not available.")
                token = {"g": cal.generation, "m": "full", "s": 0, "u": cal.seq, "o": 0, "se": single,
                         "tm": query.get("timeMin", ""), "tx": query.get("timeMax", ""),
                         "del": query.get("showDeleted") == "true", "ob": query.get("orderBy", "")}
            chosen = self._chosen(cal, token)
            offset = int(token["o"])
            items = [e.body for e in chosen[offset:offset + size]]
            body: dict[str, Any] = {"kind": "calendar#events", "summary": cal.email, "timeZone": cal.time_zone,
                                    "updated": _rfc3339(datetime.now(tz=UTC)), "items": items}
            if offset + size < len(chosen):
                body["nextPageToken"] = self._token({**token, "o": offset + size})
            else:
                body["nextSyncToken"] = self._token({"g": cal.generation, "u": token["u"]})
        return 200, {}, body

    def _chosen(self, cal: GCalendar, token: dict[str, Any]) -> list[Entry]:
        """What a round returns, in its order (a round is one snapshot: changes after it wait for the next)."""
        since, upto, sync = int(token["s"]), int(token["u"]), token["m"] == "sync"
        time_min = _parse(token["tm"]) if token.get("tm") else None
        time_max = _parse(token["tx"]) if token.get("tx") else None
        zone = ZoneInfo(cal.time_zone)
        found: list[Entry] = []
        for event in cal.events.values():
            for entry in self._entries(event, bool(token.get("se")), time_max, zone):
                if sync:
                    if since < entry.seq <= upto:
                        found.append(entry)
                    continue
                if entry.seq > upto or (entry.body.get("status") == "cancelled" and not token.get("del")):
                    continue
                if (time_min is None or entry.end > time_min) and (time_max is None or entry.start < time_max):
                    found.append(entry)
        if token.get("ob") == "startTime":
            return sorted(found, key=lambda e: (e.start, e.id))
        return sorted(found, key=lambda e: (e.seq, e.start, e.id))

    def _entries(self, event: GEvent, single: bool, time_max: datetime | None, zone: ZoneInfo) -> list[Entry]:
        """An event as a listing sees it: itself, its instances (``singleEvents``), or its master and exceptions."""
        def span(body: dict[str, Any], fallback: GEvent) -> tuple[datetime, datetime]:
            source = body if "start" in body else fallback.data
            start, end = moment_of(source["start"], zone)[0], moment_of(source["end"], zone)[0]
            return start.astimezone(UTC), end.astimezone(UTC)

        if event.deleted and not event.recurring:
            body = {"kind": "calendar#event", "id": event.id, "status": "cancelled"}
            return [Entry(event.id, event.seq, {"etag": f'"{event.seq}"', **body}, *span(event.data, event))]
        if not event.recurring:
            return [Entry(event.id, event.seq, {"etag": f'"{event.seq}"', **event.data}, *span(event.data, event))]
        horizon = time_max or datetime.now(tz=UTC) + timedelta(days=HORIZON_DAYS)
        all_day = "date" in event.data["start"]
        entries: list[Entry] = []
        if not single:
            body = {"kind": "calendar#event", "id": event.id, "status": "cancelled"} if event.deleted else event.data
            starts = original_starts(event.data, horizon)
            first, last = span(event.data, event)
            until = starts[-1].astimezone(UTC) + (last - first) if starts else last
            entries.append(Entry(event.id, event.seq, {"etag": f'"{event.seq}"', **body}, first, until))
        for original in original_starts(event.data, horizon):
            ident = instance_id(event.id, original, all_day)
            held = event.overrides.get(ident)
            if not single and (held is None or event.deleted):
                continue  # without singleEvents only exceptions are listed beside the master
            if event.deleted:
                seq = event.seq
            elif held is not None and held.cancelled:
                seq = held.seq
            else:
                seq = max(event.seq, held.seq if held is not None else 0)
            body = instance(event.data, original, held, event.deleted)
            if "start" in body:
                start, end = span(body, event)
            else:  # a cancelled instance: when it would have been
                first, last = span(event.data, event)
                start = original.astimezone(UTC)
                end = start + (last - first)
            entries.append(Entry(ident, seq, {"etag": f'"{seq}"', **body}, start, end))
        return entries


def register_calendar(app: Flask, state: FakeCalendarState) -> None:
    """Add the Calendar endpoints to a fake Google app."""

    @app.get("/calendar/v3/calendars/<calendar_id>/events")
    def calendar_events(calendar_id: str) -> Any:
        info = state.google.token_info(request.headers.get("Authorization"))
        status, headers, body = state.handle(request.full_path, info)
        resp = Response(json.dumps(body), status=status, mimetype="application/json")
        for name, value in headers.items():
            resp.headers[name] = value
        return resp
