"""A fake Google Calendar API (v3) at the wire protocol: ``events.list`` with sync tokens.

Served on loopback https under ``/calendar/v3`` of the fake Google host; the product reaches it
only through ``GOOGLE_CALENDAR_API_URL``. Kept from Google Calendar: a full round (``timeMin``,
optionally ``timeMax``, ``singleEvents=true``) pages through ``nextPageToken`` and ends with a
``nextSyncToken`` on its last page only; a ``syncToken`` round returns what changed since, deleted
events always included with ``status: "cancelled"`` and only their id; ``syncToken`` cannot be
combined with ``timeMin``/``timeMax``/``q``/``orderBy``/``updatedMin`` (400); an expired token
answers 410 ``fullSyncRequired`` (:meth:`FakeCalendarState.expire_sync_tokens`). A meeting the
organiser cancelled stays on an invitee's calendar with ``status: "cancelled"`` and its details.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask, Response, request

from sandbox.google import CALENDAR_EVENTS_READONLY, FakeGoogleState, TokenInfo
from sandbox.google_faults import Faults, google_error

Answer = tuple[int, dict[str, str], Any]
_NOT_WITH_SYNC_TOKEN = ("timeMin", "timeMax", "q", "orderBy", "updatedMin", "iCalUID")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _when(moment: datetime, all_day: bool) -> dict[str, str]:
    return {"date": moment.date().isoformat()} if all_day else {"dateTime": _rfc3339(moment), "timeZone": "UTC"}


@dataclass
class GEvent:
    """An event (a single meeting or one instance of a series) in a fake calendar."""

    id: str
    data: dict[str, Any]
    seq: int
    deleted: bool = False


@dataclass
class GCalendar:
    """One account's primary calendar."""

    email: str
    events: dict[str, GEvent] = field(default_factory=dict)
    seq: int = 0
    # Bumped by expire_sync_tokens(): tokens of an older generation answer 410.
    generation: int = 0


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

    def _find(self, event_id: str) -> tuple[GCalendar, GEvent]:
        with self.lock:
            for cal in self.calendars.values():
                if event_id in cal.events:
                    return cal, cal.events[event_id]
        raise KeyError(event_id)

    def add_event(self, address: str, *, subject: str = "Meeting", start: datetime, end: datetime,
                  organizer: str = "", attendees: list[str] | None = None, uid: str | None = None, body: str = "",
                  sensitivity: str = "normal", location: str = "", all_day: bool = False,
                  recurring_event_id: str = "", original_start: datetime | None = None) -> str:
        """Put an event in the calendar; returns its id."""
        cal = self.calendar(address)
        organizer = (organizer or cal.email).lower()
        event_id = uuid.uuid4().hex[:26]
        if recurring_event_id and original_start is not None:
            event_id = f"{recurring_event_id}_{original_start.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
        now = _rfc3339(datetime.now(tz=UTC))
        data: dict[str, Any] = {
            "kind": "calendar#event", "id": event_id, "status": "confirmed", "created": now, "updated": now,
            "summary": subject, "description": body, "location": location,
            "creator": {"email": organizer}, "organizer": {"email": organizer, **({"self": True} if organizer ==
                                                                                 cal.email else {})},
            "start": _when(start, all_day), "end": _when(end, all_day),
            "iCalUID": uid or f"{uuid.uuid4().hex}@google.com", "sequence": 0,
            "attendees": [{"email": a.lower(), "responseStatus": "needsAction",
                           **({"self": True} if a.lower() == cal.email else {})} for a in (attendees or [])],
            "visibility": {"private": "private", "confidential": "confidential"}.get(sensitivity, "default"),
            "eventType": "default",
        }
        if recurring_event_id and original_start is not None:
            data["recurringEventId"] = recurring_event_id
            data["originalStartTime"] = _when(original_start, all_day)
        with self.lock:
            cal.events[event_id] = GEvent(event_id, data, self._bump(cal))
        return event_id

    def update_event(self, event_id: str, **changes: Any) -> None:
        """Change an event (``subject``, ``start``, ``end``, ``attendees``, ``body`` or raw fields)."""
        cal, event = self._find(event_id)
        names = {"subject": "summary", "body": "description"}
        with self.lock:
            for name, value in changes.items():
                if name in ("start", "end") and isinstance(value, datetime):
                    event.data[name] = _when(value, "date" in event.data[name])
                elif name == "attendees":
                    event.data["attendees"] = [{"email": a.lower(), "responseStatus": "needsAction"} for a in value]
                else:
                    event.data[names.get(name, name)] = value
            event.data["sequence"] = int(event.data.get("sequence", 0)) + 1
            event.data["updated"] = _rfc3339(datetime.now(tz=UTC))
            event.seq = self._bump(cal)

    def cancel_event(self, event_id: str) -> None:
        """The organiser cancelled the meeting: it stays on this calendar with status cancelled."""
        self.update_event(event_id, status="cancelled")

    def delete_event(self, event_id: str) -> None:
        """Delete the event from this calendar (sync rounds report only its id, status cancelled)."""
        cal, event = self._find(event_id)
        with self.lock:
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
                token = {"g": cal.generation, "m": "sync", "s": sync["u"], "u": cal.seq, "o": 0}
            else:
                if query.get("singleEvents") != "true" and query.get("orderBy") == "startTime":
                    return 400, {}, google_error(400, "badRequest", "The requested ordering is not available.")
                token = {"g": cal.generation, "m": "full", "s": 0, "u": cal.seq, "o": 0,
                         "tm": query.get("timeMin", ""), "tx": query.get("timeMax", ""),
                         "del": query.get("showDeleted") == "true"}
            chosen = self._chosen(cal, token)
            offset = int(token["o"])
            chunk = chosen[offset:offset + size]
            items = [self._render(cal.events[i]) for i in chunk]
            body: dict[str, Any] = {"kind": "calendar#events", "summary": cal.email, "timeZone": "UTC",
                                    "updated": _rfc3339(datetime.now(tz=UTC)), "items": items}
            if offset + size < len(chosen):
                body["nextPageToken"] = self._token({**token, "o": offset + size})
            else:
                body["nextSyncToken"] = self._token({"g": cal.generation, "u": token["u"]})
        return 200, {}, body

    def _chosen(self, cal: GCalendar, token: dict[str, Any]) -> list[str]:
        since, upto = int(token["s"]), int(token["u"])
        found: list[GEvent] = []
        for event in sorted(cal.events.values(), key=lambda e: e.seq):
            if token["m"] == "sync":
                if since < event.seq <= upto:
                    found.append(event)
                continue
            if event.seq > upto or event.deleted:
                continue
            if event.data.get("status") == "cancelled" and not token.get("del"):
                continue
            if self._in_range(event, token.get("tm", ""), token.get("tx", "")):
                found.append(event)
        return [e.id for e in found]

    @staticmethod
    def _in_range(event: GEvent, time_min: str, time_max: str) -> bool:
        def moment(value: dict[str, str]) -> datetime:
            return _parse(value["dateTime"]) if "dateTime" in value else _parse(value["date"] + "T00:00:00Z")

        start, end = moment(event.data["start"]), moment(event.data["end"])
        if time_min and end <= _parse(time_min):
            return False
        return not (time_max and start >= _parse(time_max))

    @staticmethod
    def _render(event: GEvent) -> dict[str, Any]:
        if event.deleted:
            return {"kind": "calendar#event", "etag": f'"{event.seq}"', "id": event.id, "status": "cancelled"}
        return {"etag": f'"{event.seq}"', **event.data}


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
