"""A fake Microsoft Graph (v1.0) at the wire protocol: profile, mail and calendar delta, ``$batch``.

Served on loopback https; the product reaches it only through ``GRAPH_URL``. Access tokens are the
ones :mod:`sandbox.microsoft` issued (delegated: ``/me`` is that user; application: any
``/users/{id}`` of the token's tenant).

Delta follows Graph's contract: an initial round (``$select``, ``$expand``, ``$filter`` for mail,
``startDateTime``/``endDateTime`` for ``calendarView``) pages by ``Prefer: odata.maxpagesize``
through ``@odata.nextLink`` (``$skiptoken``) and ends with an ``@odata.deltaLink``
(``$deltatoken``); a later round returns only what changed since, removals as ``@removed`` (an
event moved outside the calendarView range too; ``GET /events/{id}`` still finds it). Tests
can make every token handed out so far expire (410), inject 429 with Retry-After, 503, 500, 410 and
slow answers, and read the peak number of requests in flight per mailbox from the recorder (tag =
the mailbox of the token). Subscriptions and change notifications: :mod:`sandbox.graph_push`.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask, Response, request

from sandbox.graph_push import GraphPush, add_routes
from sandbox.microsoft import FakeMicrosoftState, MsUser, TokenInfo
from sandbox.server import Recorder

MAIL_FOLDERS = ("inbox", "sentitems")
DEFAULT_PAGE_SIZE = 10
_PREFER_PAGE = re.compile(r"odata\.maxpagesize=(\d+)")
_PREFER_BODY = re.compile(r'outlook\.body-content-type="?(text|html)"?')
_FILTER = re.compile(r"^receivedDateTime (ge|gt) (\S+)$")
_SENSITIVITY_CODES = {"normal": 0, "personal": 1, "private": 2, "confidential": 3}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _when(moment: datetime, all_day: bool = False) -> str:
    """An event time as Graph writes it with ``Prefer: outlook.timezone="UTC"`` (all-day: the local date)."""
    if all_day:
        return moment.strftime("%Y-%m-%dT00:00:00.0000000")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000")


def _recipient(address: str, name: str = "") -> dict[str, Any]:
    return {"emailAddress": {"name": name or address.split("@")[0], "address": address}}


@dataclass
class Item:
    """A message or event in a fake mailbox; ``seq`` is the mailbox's change counter at its last change."""

    id: str
    folder: str  # "inbox", "sentitems" or "calendar"
    data: dict[str, Any]
    seq: int
    deleted: bool = False
    body: str = ""
    sensitivity: str = "normal"
    # The Graph fields before the last update (a calendar round tells "moved out of range" by them).
    before: dict[str, Any] | None = None


@dataclass
class FakeMailbox:
    """One user's mailbox."""

    user: MsUser
    items: dict[str, Item] = field(default_factory=dict)
    seq: int = 0
    # Bumped by expire_cursors(): every token carrying an older generation answers 410.
    generation: int = 0


@dataclass
class Rule:
    """An injected failure or delay for the next ``times`` matching requests (None: all of them)."""

    kind: str  # "429", "503", "500", "410" or "slow"
    times: int | None = 1
    retry_after: float | None = None
    delay: float = 0.0
    path_contains: str = ""
    in_batch: bool = False  # True: applies to $batch sub-requests instead of whole HTTP requests
    mailbox: str | None = None
    hits: int = 0


@dataclass
class FakeGraphState:
    """Mailboxes of the fake Graph; tests seed and change them directly."""

    ms: FakeMicrosoftState
    base_url: str = ""
    mailboxes: dict[str, FakeMailbox] = field(default_factory=dict)
    rounds: dict[str, list[str]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    # Seconds every request (and sub-request) takes, to make concurrency observable.
    latency: float = 0.0
    # (mailbox, sub-request path) of every $batch sub-request, in order.
    batch_log: list[tuple[str, str]] = field(default_factory=list)
    # When each throttled answer (429/503) was sent, by monotonic clock, with its Retry-After.
    throttled_at: list[tuple[float, float]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    recorder: Recorder | None = None
    push: GraphPush = field(init=False)

    def __post_init__(self) -> None:
        self.push = GraphPush(self)

    def notify(self, box: FakeMailbox, item_id: str, change: str) -> None:
        """Tell the subscriptions watching the item (change notifications, sent in the background)."""
        self.push.changed(box.user, box.items[item_id], change)

    # --- seeding --------------------------------------------------------------------------------

    def mailbox(self, mail: str) -> FakeMailbox:
        """The mailbox of a user of the identity fake (created on first use)."""
        user = self.ms.find_user(mail)
        assert user is not None, f"unknown user {mail}"
        with self.lock:
            if user.oid not in self.mailboxes:
                self.mailboxes[user.oid] = FakeMailbox(user)
            return self.mailboxes[user.oid]

    def _bump(self, box: FakeMailbox) -> int:
        box.seq += 1
        return box.seq

    def _find(self, item_id: str) -> tuple[FakeMailbox, Item]:
        with self.lock:
            for box in self.mailboxes.values():
                if item_id in box.items:
                    return box, box.items[item_id]
        raise KeyError(item_id)

    def add_message(self, mail: str, folder: str = "inbox", *, subject: str = "Hello", sender: str = "",
                    to: list[str] | None = None, cc: list[str] | None = None, body: str = "",
                    message_id: str | None = None, when: datetime | None = None, sensitivity: str = "normal",
                    is_draft: bool = False) -> str:
        """Put a message in "inbox" or "sentitems"; returns its id."""
        folder = {"sent": "sentitems"}.get(folder, folder)
        assert folder in MAIL_FOLDERS, folder
        box = self.mailbox(mail)
        moment = when or datetime.now(tz=UTC)
        sender = sender or (box.user.mail if folder == "sentitems" else "someone@example.net")
        data = {
            "internetMessageId": message_id if message_id is not None else f"<{uuid.uuid4().hex}@fake.example>",
            "subject": subject,
            "from": _recipient(sender),
            "sender": _recipient(sender),
            "toRecipients": [_recipient(a) for a in (to or [box.user.mail])],
            "ccRecipients": [_recipient(a) for a in (cc or [])],
            "receivedDateTime": _iso(moment),
            "sentDateTime": _iso(moment),
            "isDraft": is_draft,
        }
        item_id = "AAMk" + uuid.uuid4().hex
        with self.lock:
            box.items[item_id] = Item(item_id, folder, data, self._bump(box), body=body, sensitivity=sensitivity)
        self.notify(box, item_id, "created")
        return item_id

    def add_event(self, mail: str, *, subject: str = "Meeting", start: datetime, end: datetime,
                  organizer: str = "", attendees: list[str] | None = None, uid: str | None = None, body: str = "",
                  sensitivity: str = "normal", kind: str = "singleInstance", original_start: datetime | None = None,
                  is_all_day: bool = False, location: str = "") -> str:
        """Put an event (an instance, as calendarView shows it) in the calendar; returns its id."""
        box = self.mailbox(mail)
        organizer = organizer or box.user.mail
        data = {
            "iCalUId": uid or f"040000008200E00074C5B7101A82E008{uuid.uuid4().hex.upper()}",
            "subject": subject,
            # Graph gives an all-day event midnight to midnight of its dates, whatever zone was asked for.
            "start": {"dateTime": _when(start, is_all_day), "timeZone": "UTC"},
            "end": {"dateTime": _when(end, is_all_day), "timeZone": "UTC"},
            "isAllDay": is_all_day,
            "originalStartTimeZone": str(start.tzinfo or "UTC"),
            "isCancelled": False,
            "type": kind,
            "originalStart": _iso(original_start) if original_start else None,
            "organizer": _recipient(organizer),
            "attendees": [{"type": "required", "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                           **_recipient(a)} for a in (attendees or [])],
            "sensitivity": sensitivity,
            "location": {"displayName": location},
        }
        item_id = "AAMkEv" + uuid.uuid4().hex
        with self.lock:
            box.items[item_id] = Item(item_id, "calendar", data, self._bump(box), body=body, sensitivity=sensitivity)
        self.notify(box, item_id, "created")
        return item_id

    def update_item(self, item_id: str, **changes: Any) -> None:
        """Change an item's Graph fields (``subject=...``, ``start=datetime`` ...); it shows up in the next round."""
        box, item = self._find(item_id)
        with self.lock:
            item.before = dict(item.data)
            for name, value in changes.items():
                if name == "body":
                    item.body = str(value)
                elif name in {"start", "end"} and isinstance(value, datetime):
                    item.data[name] = {"dateTime": _when(value, bool(item.data.get("isAllDay"))), "timeZone": "UTC"}
                elif name == "attendees":
                    item.data["attendees"] = [{"type": "required", **_recipient(a)} for a in value]
                elif name == "location" and isinstance(value, str):
                    item.data["location"] = {"displayName": value}
                else:
                    item.data[name] = value
            item.seq = self._bump(box)
        self.notify(box, item_id, "updated")

    def cancel_event(self, item_id: str) -> None:
        """Cancel a meeting (it stays, marked cancelled, as an attendee sees it)."""
        self.update_item(item_id, isCancelled=True, subject="Canceled: " + self._find(item_id)[1].data["subject"])

    def delete_item(self, item_id: str) -> None:
        """Delete a message or event (the next round reports it as ``@removed``)."""
        box, item = self._find(item_id)
        with self.lock:
            item.deleted = True
            item.seq = self._bump(box)
        self.notify(box, item_id, "deleted")

    def expire_cursors(self, mail: str | None = None) -> None:
        """Make every skip/delta token handed out so far answer 410 Gone."""
        with self.lock:
            for box in self.mailboxes.values():
                if mail is None or box.user.mail == mail.lower():
                    box.generation += 1

    def inject(self, kind: str, times: int | None = 1, *, retry_after: float | None = None, delay: float = 0.0,
               path_contains: str = "", in_batch: bool = False, mailbox: str | None = None) -> Rule:
        """Fail (or slow down) the next matching requests."""
        rule = Rule(kind, times, retry_after, delay, path_contains, in_batch, mailbox.lower() if mailbox else None)
        with self.lock:
            self.rules.append(rule)
        return rule

    def peak_in_flight(self, mail: str) -> int:
        """The largest number of requests that were in flight at once for a mailbox."""
        assert self.recorder is not None
        return self.recorder.peak_in_flight.get(mail.lower(), 0)

    # --- request handling -------------------------------------------------------------------------

    def user_of(self, info: TokenInfo | None, path: str) -> MsUser | None:
        """The mailbox a request addresses (None when it cannot be told)."""
        if info is None:
            return None
        parts = path.strip("/").split("/")
        if parts and parts[0] == "v1.0":
            parts = parts[1:]
        if parts and parts[0] == "users" and len(parts) > 1:
            return self.ms.find_user(parts[1])
        if info.kind == "delegated":
            return self.ms.find_user(info.oid)
        return None

    def tag_of(self, environ: dict[str, Any]) -> str:
        """The Recorder tag of an HTTP request: the mailbox it reads."""
        info = self.ms.token_info(environ.get("HTTP_AUTHORIZATION"))
        path = environ.get("PATH_INFO", "")
        if path.endswith("/$batch"):
            try:
                body = json.loads(environ["wsgi.input"].getvalue() or b"{}")
                path = str(body["requests"][0]["url"])
            except (ValueError, KeyError, IndexError, AttributeError, TypeError):
                pass
        user = self.user_of(info, path)
        return user.mail if user else ""

    def _rule_for(self, path: str, mail: str, in_batch: bool) -> list[Rule]:
        found: list[Rule] = []
        with self.lock:
            for rule in self.rules:
                if rule.in_batch != in_batch or rule.path_contains not in path:
                    continue
                if rule.mailbox and rule.mailbox != mail:
                    continue
                if rule.times is not None and rule.hits >= rule.times:
                    continue
                rule.hits += 1
                found.append(rule)
                if rule.kind != "slow":
                    break
        return found

    def handle(self, method: str, url: str, headers: dict[str, str], info: TokenInfo | None,
               in_batch: bool = False) -> tuple[int, dict[str, str], Any]:
        """One Graph request (top level or inside ``$batch``): (status, headers, JSON body)."""
        parts = urlsplit(url)
        path = parts.path
        if path.startswith("/v1.0"):
            path = path[len("/v1.0"):]
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        user = self.user_of(info, path)
        if self.latency:
            time.sleep(self.latency)
        for rule in self._rule_for(path, user.mail if user else "", in_batch):
            if rule.kind == "slow":
                time.sleep(rule.delay)
                continue
            status = int(rule.kind)
            extra = {"Retry-After": f"{rule.retry_after:g}"} if rule.retry_after is not None else {}
            if status in (429, 503):
                with self.lock:
                    self.throttled_at.append((time.monotonic(), float(rule.retry_after or 0)))
            code = {429: "TooManyRequests", 503: "ServiceNotAvailable", 410: "SyncStateNotFound",
                    500: "InternalServerError"}.get(status, "Error")
            return status, extra, {"error": {"code": code, "message": f"Injected {status}."}}
        if info is None:
            return 401, {}, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty or "
                                                                                       "invalid."}}
        if method != "GET":
            return 405, {}, {"error": {"code": "BadRequest", "message": "Only GET is supported here."}}
        segments = path.strip("/").split("/")
        if segments[0] == "me":
            if info.kind != "delegated":
                return 400, {}, {"error": {"code": "BadRequest", "message": "/me request is only valid with "
                                                                             "delegated authentication flow."}}
            rest, prefix = segments[1:], "me"
        elif segments[0] == "users" and len(segments) > 1:
            rest, prefix = segments[2:], f"users/{segments[1]}"
            if user is None or user.tid != info.tid:
                return 404, {}, {"error": {"code": "ErrorInvalidUser", "message": "The requested user is invalid."}}
            if info.kind == "delegated" and user.oid != info.oid:
                return 403, {}, {"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}}
            scope = self.ms.tenant(info.tid).app_access_scope
            if info.kind == "app" and segments[2:] and scope is not None and user.mail.lower() not in scope:
                # Exchange's RBAC for Applications: the directory entry is readable, the mailbox is not.
                return 403, {}, {"error": {"code": "ErrorAccessDenied", "message": "Access to OData is disabled: "
                                                                                  "the application is not in scope."}}
        else:
            return 400, {}, {"error": {"code": "BadRequest", "message": f"Unsupported segment {segments[0]}."}}
        assert user is not None
        if not rest:
            return self._profile(user, info, query)
        if len(rest) == 4 and rest[0] == "mailFolders" and rest[2:] == ["messages", "delta"]:
            if rest[1].lower() not in MAIL_FOLDERS:
                return 404, {}, {"error": {"code": "ErrorInvalidIdMalformed", "message": "Unknown folder."}}
            if "Mail.Read" not in info.scopes:
                return 403, {}, {"error": {"code": "ErrorAccessDenied", "message": "Mail.Read is required."}}
            return self._delta(user, prefix, rest[1].lower(), query, headers)
        if len(rest) == 2 and rest[0] == "mailFolders":
            return 200, {}, {"id": f"{user.oid}-{rest[1]}", "displayName": rest[1]}
        if len(rest) == 2 and rest[0] == "messages":
            return self._one(user, rest[0], rest[1], query)
        if rest == ["calendarView", "delta"] or (len(rest) == 2 and rest[0] == "events"):
            if "Calendars.Read" not in info.scopes:
                return 403, {}, {"error": {"code": "ErrorAccessDenied", "message": "Calendars.Read is required."}}
            if rest[0] == "events":
                return self._event(user, rest[1], headers)
            return self._delta(user, prefix, "calendar", query, headers)
        return 404, {}, {"error": {"code": "ResourceNotFound", "message": "Unsupported path."}}

    def _profile(self, user: MsUser, info: TokenInfo, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if info.kind == "delegated" and "User.Read" not in info.scopes:
            return 403, {}, {"error": {"code": "Authorization_RequestDenied", "message": "User.Read is required."}}
        full = {
            "id": user.oid,
            "displayName": user.display_name,
            "mail": user.mail,
            "userPrincipalName": user.upn,
            "proxyAddresses": [f"SMTP:{user.mail}", *(f"smtp:{a}" for a in user.aliases), "x500:/o=Fake/cn=x"],
        }
        select = [s for s in query.get("$select", "").split(",") if s]
        # Like Graph, proxyAddresses only comes back when selected.
        body = {k: v for k, v in full.items() if (k in select or k == "id")} if select else \
            {k: v for k, v in full.items() if k != "proxyAddresses"}
        return 200, {}, body

    def _event(self, user: MsUser, event_id: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        """``GET /events/{id}``: the event wherever it is in the calendar (404 once deleted)."""
        box = self.mailbox(user.mail)
        prefer = " ".join(v for k, v in headers.items() if k.lower() == "prefer")
        body_match = _PREFER_BODY.search(prefer)
        with self.lock:
            item = box.items.get(event_id)
            if item is None or item.deleted or item.folder != "calendar":
                return 404, {}, {"error": {"code": "ErrorItemNotFound",
                                           "message": "The specified object was not found in the store."}}
            return 200, {}, self._render(item, {}, body_match.group(1) if body_match else "html")

    # --- delta ------------------------------------------------------------------------------------

    @staticmethod
    def _token(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")

    @staticmethod
    def _untoken(raw: str) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return decoded

    def _delta(self, user: MsUser, prefix: str, folder: str, query: dict[str, str],
               headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        box = self.mailbox(user.mail)
        prefer = " ".join(v for k, v in headers.items() if k.lower() == "prefer")
        size_match = _PREFER_PAGE.search(prefer)
        size = int(size_match.group(1)) if size_match else DEFAULT_PAGE_SIZE
        body_match = _PREFER_BODY.search(prefer)
        body_type = body_match.group(1) if body_match else "html"
        gone = (410, {}, {"error": {"code": "SyncStateNotFound", "message": "The sync state generation is not "
                                                                            "available."}})
        with self.lock:
            if "$skiptoken" in query or "$deltatoken" in query:
                try:
                    token = self._untoken(query.get("$skiptoken") or query["$deltatoken"])
                except (ValueError, KeyError):
                    return 400, {}, {"error": {"code": "BadRequest", "message": "Malformed state token."}}
                if token.get("g") != box.generation or token.get("f") != folder:
                    return gone
                if "$skiptoken" in query:
                    rid, offset, upto = token["r"], int(token["o"]), int(token["u"])
                    if rid not in self.rounds:
                        return gone
                else:
                    upto = box.seq
                    rid, offset = uuid.uuid4().hex, 0
                    self.rounds[rid] = self._changed(box, folder, int(token["u"]), upto, token)
            else:
                token = {"g": box.generation, "f": folder, "sel": query.get("$select", ""),
                         "exp": query.get("$expand", "")}
                if folder == "calendar":
                    if not query.get("startDateTime") or not query.get("endDateTime"):
                        return 400, {}, {"error": {"code": "ErrorInvalidParameter", "message": "startDateTime and "
                                                                                             "endDateTime are "
                                                                                             "required."}}
                    token["ws"], token["we"] = query["startDateTime"], query["endDateTime"]
                else:
                    flt = query.get("$filter", "")
                    match = _FILTER.match(flt) if flt else None
                    if flt and not match:
                        return 400, {}, {"error": {"code": "ErrorInvalidUrlQueryFilter", "message": "Unsupported "
                                                                                                  "filter."}}
                    if match:
                        token["fo"], token["fv"] = match.group(1), match.group(2)
                upto = box.seq
                rid, offset = uuid.uuid4().hex, 0
                self.rounds[rid] = self._changed(box, folder, 0, upto, token)
            ids = self.rounds[rid]
            chunk = ids[offset:offset + size]
            values = [self._render(box.items[i], token, body_type) for i in chunk]
            base = {k: token[k] for k in token if k not in {"r", "o", "u"}}
            link = f"{self.base_url}/v1.0/{prefix}/" + (f"mailFolders/{folder}/messages/delta" if folder != "calendar"
                                                        else "calendarView/delta")
            answer: dict[str, Any] = {"@odata.context": f"{self.base_url}/v1.0/$metadata#Collection(item)",
                                      "value": values}
            if offset + size < len(ids):
                skip = self._token({**base, "r": rid, "o": offset + size, "u": upto})
                answer["@odata.nextLink"] = f"{link}?$skiptoken={skip}"
            else:
                # The round stays readable: a run that stopped mid-round may replay a nextLink.
                answer["@odata.deltaLink"] = f"{link}?$deltatoken={self._token({**base, 'u': upto})}"
        return 200, {"Preference-Applied": f"odata.maxpagesize={size}"}, answer

    @staticmethod
    def _in_range(data: dict[str, Any], token: dict[str, Any]) -> bool:
        """Whether event fields ``data`` overlap the calendarView range of ``token``."""
        if "ws" not in token:
            return True
        start = _parse(data["start"]["dateTime"] + ("" if data["start"]["dateTime"].endswith("Z") else "Z"))
        end = _parse(data["end"]["dateTime"] + ("" if data["end"]["dateTime"].endswith("Z") else "Z"))
        return end > _parse(token["ws"]) and start < _parse(token["we"])

    def _in_scope(self, item: Item, token: dict[str, Any]) -> bool:
        if item.folder == "calendar":
            return self._in_range(item.data, token)
        if "fv" not in token:
            return True
        received = _parse(item.data["receivedDateTime"])
        bound = _parse(token["fv"])
        return received >= bound if token["fo"] == "ge" else received > bound

    def _changed(self, box: FakeMailbox, folder: str, since: int, upto: int, token: dict[str, Any]) -> list[str]:
        """Ids for a round: initial (since=0) lists what exists; later rounds what changed since."""
        chosen = []
        for item in sorted(box.items.values(), key=lambda i: i.seq):
            if item.folder != folder or not since < item.seq <= upto:
                continue
            if item.deleted:
                if since:
                    chosen.append(item.id)
                continue
            # A later round also lists a calendar item that moved out of the range (as @removed).
            if self._in_scope(item, token) or (since and folder == "calendar" and item.before is not None
                                               and self._in_range(item.before, token)):
                chosen.append(item.id)
        return chosen

    def _one(self, user: MsUser, kind: str, item_id: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        """GET /me/messages/{id} or /me/events/{id}: one item of the user's own mailbox."""
        box = self.mailbox(user.mail)
        with self.lock:
            item = box.items.get(item_id)
        if item is None or item.deleted or (item.folder == "calendar") != (kind == "events"):
            return 404, {}, {"error": {"code": "ErrorItemNotFound", "message": "The specified object was not "
                                                                                "found in the store."}}
        token = {"sel": query.get("$select", ""), "exp": query.get("$expand", "")}
        return 200, {}, self._render(item, token, "text")

    def _render(self, item: Item, token: dict[str, Any], body_type: str) -> dict[str, Any]:
        odata = "#microsoft.graph.event" if item.folder == "calendar" else "#microsoft.graph.message"
        if item.deleted or (item.folder == "calendar" and not self._in_scope(item, token)):
            # Graph says "deleted" for an event that left the calendarView range too.
            return {"@odata.type": odata, "id": item.id, "@removed": {"reason": "deleted"}}
        content = item.body if body_type == "text" else f"<html><body>{html.escape(item.body)}</body></html>"
        full = {"@odata.type": odata, "@odata.etag": f'W/"{item.seq}"', "id": item.id, **item.data,
                "body": {"contentType": body_type, "content": content}}
        if item.folder == "calendar":
            return full
        select = [s for s in str(token.get("sel", "")).split(",") if s]
        if select:
            full = {k: v for k, v in full.items() if k in select or k in {"id", "@odata.type", "@odata.etag"}}
        if "singleValueExtendedProperties" in str(token.get("exp", "")) and "0x0036" in str(token.get("exp", "")):
            full["singleValueExtendedProperties"] = [
                {"id": "Integer 0x36", "value": str(_SENSITIVITY_CODES.get(item.sensitivity, 0))}]
        return full


def create_app(state: FakeGraphState) -> Flask:
    """The fake Graph's Flask app over ``state``."""
    app = Flask("fake_graph")
    add_routes(app, state.push)

    def respond(status: int, headers: dict[str, str], body: Any) -> Response:
        resp = Response(json.dumps(body), status=status, mimetype="application/json")
        for name, value in headers.items():
            resp.headers[name] = value
        return resp

    @app.post("/v1.0/$batch")
    def batch() -> Any:
        info = state.ms.token_info(request.headers.get("Authorization"))
        user = state.user_of(info, "/$batch")
        outer = state.handle("POST", "/$batch", dict(request.headers), info)
        if outer[0] != 405:
            # An injected failure (or a missing token) for the whole batch request.
            return respond(*outer)
        payload = request.get_json(silent=True) or {}
        subs = payload.get("requests") or []
        if not isinstance(subs, list) or not subs or len(subs) > 20:
            return respond(400, {}, {"error": {"code": "BadRequest", "message": "A batch holds 1 to 20 requests."}})
        answers = []
        for sub in subs:
            url = str(sub.get("url", ""))
            target = state.user_of(info, url)
            with state.lock:
                state.batch_log.append(((target or user).mail if (target or user) else "", url))
            status, headers, body = state.handle(str(sub.get("method", "GET")), url, dict(sub.get("headers") or {}),
                                                 info, in_batch=True)
            answers.append({"id": sub.get("id"), "status": status, "headers": headers, "body": body})
        return respond(200, {}, {"responses": answers})

    @app.get("/v1.0/<path:rest>")
    def get(rest: str) -> Any:
        info = state.ms.token_info(request.headers.get("Authorization"))
        url = request.full_path
        return respond(*state.handle("GET", url, dict(request.headers), info))

    return app


def recorded_app(state: FakeGraphState) -> Recorder:
    """The app wrapped in a Recorder that tags requests with their mailbox."""
    recorder = Recorder(create_app(state), tag_of=state.tag_of)
    state.recorder = recorder
    return recorder


def serve(ms: FakeMicrosoftState, cert: Any) -> tuple[FakeGraphState, Any]:
    """Start a fake Graph over ``ms`` on loopback https (keep-alive, as Graph); returns (state, server)."""
    from sandbox.keepalive import KeepAliveFakeServer

    state = FakeGraphState(ms)
    server = KeepAliveFakeServer(recorded_app(state), cert).start()
    state.base_url = server.url
    return state, server
