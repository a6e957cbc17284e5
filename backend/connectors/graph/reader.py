"""Microsoft 365 mailboxes through Microsoft Graph delta queries (plain ``requests``, no SDK).

Inbox and Sent Items are read with ``/mailFolders/{inbox|sentitems}/messages/delta`` and the
calendar with ``/calendarView/delta`` over the sync window. Every ``@odata.nextLink`` is followed;
each page's cursor is its nextLink (a crash resumes mid-round) and the last page's is the
``@odata.deltaLink`` (the next run reads only changes). ``@removed`` entries become deletions. A
410 on a link starts one bounded resync of that folder from the window, skipping what this run
already yielded.

A calendarView delta link stays bound to the date range of the round's first request, so the
calendar cursor also records that range's end (``cal1|<epoch>|<link>``). Once the current window
reaches :data:`CALENDAR_ROLL_DAYS` past it, the run first reads the old link to its end (so no
change or cancellation in between is missed) and then starts a new round over the current window;
meetings both rounds report are yielded once, and Salesforce dedup by UID covers the rest.

Graph's limits are honoured here, per mailbox and per process: at most 4 requests in flight
(:class:`MailboxGate`); a 429/503 whose ``Retry-After`` is at most ``GRAPH_MAX_WAIT_SECONDS`` holds
back every request for that mailbox until it has passed, a longer one ends the read with
:class:`Throttled` (the job is retried after it); the first page of several folders goes in one
``$batch``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from backend.config import Settings
from backend.connectors.errors import AuthRevoked, CursorExpired, Throttled, Unavailable
from backend.connectors.graph.identity import MicrosoftAuth
from backend.connectors.graph.tokens import AppOnlyTokens, MailboxTokens, StaticToken, TokenSource
from backend.connectors.mailbox import (
    FOLDERS,
    MAX_RECIPIENTS,
    Address,
    ChangePage,
    Deletion,
    EmailItem,
    EventItem,
    Folder,
    MailboxIdentity,
    Sensitivity,
    SyncWindow,
    bound_text,
    normalise_message_id,
)
from backend.net.outbound import make_session
from backend.security.crypto import fingerprint

log = logging.getLogger(__name__)

# A calendar round is restarted over the current window once its range ends this much earlier
# than the current window's: meetings created further ahead than the old range are then read.
CALENDAR_ROLL_DAYS = 30
_CALENDAR_CURSOR = "cal1"


def _calendar_cursor(link: str, window_end: float) -> str:
    """A calendar cursor: the delta or next link with the end of the range it is bound to."""
    return f"{_CALENDAR_CURSOR}|{int(window_end)}|{link}"


def _split_cursor(folder: Folder, cursor: str) -> tuple[str, float | None]:
    """(link, end of the calendar range it is bound to, or None when unknown or not the calendar)."""
    if folder is Folder.CALENDAR and cursor.startswith(_CALENDAR_CURSOR + "|"):
        _, end, link = cursor.split("|", 2)
        try:
            return link, float(end)
        except ValueError:
            return link, None
    return cursor, None

API_VERSION = "v1.0"
# Graph allows 4 concurrent requests per app per mailbox; more only earns 429s.
MAX_IN_FLIGHT = 4
MAX_BATCH = 20
MAX_ATTEMPTS = 5
# Backoff for a 503 without Retry-After (seconds, per attempt).
UNAVAILABLE_BACKOFF = (1.0, 2.0, 4.0, 8.0)
# Only what sync uses; PidTagSensitivity has no first-class message property in Graph.
MESSAGE_FIELDS = (
    "id", "internetMessageId", "subject", "body", "from", "sender", "toRecipients", "ccRecipients",
    "receivedDateTime", "sentDateTime", "isDraft",
)
SENSITIVITY_PROPERTY = "Integer 0x0036"
_SENSITIVITY_CODES = {0: Sensitivity.NORMAL, 1: Sensitivity.PERSONAL, 2: Sensitivity.PRIVATE,
                      3: Sensitivity.CONFIDENTIAL}
_MAIL_FOLDER_IDS = {Folder.INBOX: "inbox", Folder.SENT: "sentitems"}
_QUERY_SAFE = "$,()'=:"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class MailboxGate:
    """At most ``slots`` requests in flight for one mailbox, and none before a Retry-After has passed."""

    def __init__(self, slots: int = MAX_IN_FLIGHT) -> None:
        self.slots = slots
        self._free = slots
        self._not_before = 0.0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self, count: int = 1, max_wait: float | None = None) -> Iterator[None]:
        """Hold ``count`` slots (atomically, so two batches cannot deadlock) while a request runs.

        A hold-off longer than ``max_wait`` raises Throttled at once instead of blocking the run.
        """
        count = max(1, min(count, self.slots))
        with self._cond:
            while True:
                now = time.monotonic()
                if now < self._not_before:
                    remaining = self._not_before - now
                    if max_wait is not None and remaining > max_wait:
                        raise Throttled("Microsoft Graph asked us to wait for this mailbox.", retry_after=remaining)
                    self._cond.wait(remaining)
                elif self._free < count:
                    self._cond.wait()
                else:
                    self._free -= count
                    break
        try:
            yield
        finally:
            with self._cond:
                self._free += count
                self._cond.notify_all()

    def hold_off(self, seconds: float) -> None:
        """Send nothing more for this mailbox until ``seconds`` from now."""
        with self._cond:
            self._not_before = max(self._not_before, time.monotonic() + max(0.0, seconds))
            self._cond.notify_all()


_gates: weakref.WeakValueDictionary[str, MailboxGate] = weakref.WeakValueDictionary()
_gates_lock = threading.Lock()


def gate_for(key: str) -> MailboxGate:
    """The process-wide gate of one mailbox (shared by every connector open on it)."""
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = MailboxGate()
            _gates[key] = gate
        return gate


@dataclass
class GraphRequest:
    """One GET against Graph, by a path relative to the version root (``/me/...``)."""

    path: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class GraphResponse:
    """A Graph answer (a whole HTTP response or one ``$batch`` sub-response)."""

    status: int
    headers: dict[str, str]
    body: Any

    def header(self, name: str) -> str:
        """A header, case-insensitively ("" when absent)."""
        lower = name.lower()
        return next((str(v) for k, v in self.headers.items() if k.lower() == lower), "")


def retry_after_seconds(value: str, default: float) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    value = (value or "").strip()
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(tz=UTC)).total_seconds())


class GraphClient:
    """Authenticated GETs and ``$batch`` against Graph for one mailbox, within Graph's limits."""

    def __init__(self, settings: Settings, tokens: TokenSource, gate_key: str,
                 session: requests.Session | None = None) -> None:
        self.settings = settings
        self.tokens = tokens
        self.base = f"{settings.GRAPH_URL}/{API_VERSION}"
        self.session = session or make_session(settings.OUTBOUND_CA_BUNDLE, settings.OUTBOUND_TIMEOUT_SECONDS)
        self.gate = gate_for(gate_key)
        self.max_wait = float(settings.GRAPH_MAX_WAIT_SECONDS)
        self._calls = 0
        self._lock = threading.Lock()
        self._token: str | None = None

    @property
    def calls(self) -> int:
        """Graph requests made (each ``$batch`` sub-request counts, as Graph counts it)."""
        return self._calls

    def _count(self, n: int) -> None:
        with self._lock:
            self._calls += n

    def _bearer(self, refresh: bool) -> str:
        if refresh or self._token is None:
            self._token = self.tokens.access_token(force_refresh=refresh)
        return self._token

    def relative(self, link: str) -> str:
        """A link Graph handed out, as a path under our version root; refuses any other host."""
        if link.startswith("/"):
            return link
        if link.startswith(self.base + "/"):
            return link[len(self.base):]
        # A cursor or nextLink for another host must never receive our bearer token.
        raise CursorExpired("A saved Graph link points elsewhere; starting over.")

    def _throttle(self, resp: GraphResponse, attempt: int) -> None:
        """Wait out a short Retry-After (by holding the gate) or raise Throttled / Unavailable."""
        default = UNAVAILABLE_BACKOFF[min(attempt, len(UNAVAILABLE_BACKOFF) - 1)]
        hinted = resp.header("Retry-After")
        wait = retry_after_seconds(hinted, default)
        if wait > self.max_wait or attempt + 1 >= MAX_ATTEMPTS:
            # The run gives up and the job is retried after ``retry_after`` (the engine honours it);
            # holding a worker for minutes would only delay every other mailbox.
            if resp.status == 503 and not hinted:
                raise Unavailable("Microsoft Graph is unavailable (503).")
            raise Throttled(f"Microsoft Graph asked us to wait {wait:.0f} s.", retry_after=wait)
        # Every request for this mailbox in this process waits, not only the one that was refused.
        self.gate.hold_off(wait)
        log.info("graph %s: waiting %.1f s (attempt %d)", resp.status, wait, attempt + 1)

    def _send(self, method: str, path: str, headers: Mapping[str, str], body: Any, slots: int,
              refresh: bool) -> GraphResponse:
        token = self._bearer(refresh)
        all_headers = {"Accept": "application/json", **headers, "Authorization": f"Bearer {token}"}
        with self.gate.slot(slots, self.max_wait):
            try:
                raw = self.session.request(method, self.base + path, headers=all_headers,
                                           data=json.dumps(body) if body is not None else None)
            except requests.RequestException as exc:
                raise Unavailable(f"Microsoft Graph could not be reached ({type(exc).__name__}).") from None
        self._count(slots if path == "/$batch" else 1)
        try:
            parsed: Any = raw.json() if raw.content else {}
        except ValueError:
            parsed = {}
        return GraphResponse(raw.status_code, dict(raw.headers), parsed)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> GraphResponse:
        """GET ``path`` with retries: Retry-After honoured, one token refresh on 401; errors mapped."""
        refresh = False
        for attempt in range(MAX_ATTEMPTS):
            resp = self._send("GET", path, headers or {}, None, 1, refresh)
            if resp.status in (429, 503):
                self._throttle(resp, attempt)
                continue
            if resp.status == 401 and not refresh:
                refresh = True
                continue
            return check(resp)
        raise Unavailable("Microsoft Graph kept failing.")

    def batch(self, requests_: list[GraphRequest]) -> list[GraphResponse]:
        """Several GETs in ``$batch`` calls of at most 20; throttled sub-requests are retried.

        Sub-responses are returned unchecked (in order) so each caller maps its own (410 -> resync).
        """
        results: dict[int, GraphResponse] = {}
        for start in range(0, len(requests_), MAX_BATCH):
            chunk = dict(enumerate(requests_[start:start + MAX_BATCH], start=start))
            refresh = False
            for attempt in range(MAX_ATTEMPTS):
                payload = {"requests": [
                    {"id": str(i), "method": "GET", "url": r.path, "headers": r.headers} for i, r in chunk.items()
                ]}
                outer = self._send("POST", "/$batch", {"Content-Type": "application/json"}, payload,
                                   len(chunk), refresh)
                if outer.status in (429, 503):
                    self._throttle(outer, attempt)
                    continue
                if outer.status == 401 and not refresh:
                    refresh = True
                    continue
                check(outer)
                answers = outer.body.get("responses", []) if isinstance(outer.body, dict) else []
                waits: list[GraphResponse] = []
                retry_auth = False
                for answer in answers:
                    try:
                        index = int(answer.get("id"))
                    except (TypeError, ValueError):
                        continue
                    if index not in chunk:
                        continue
                    sub = GraphResponse(int(answer.get("status", 500)), dict(answer.get("headers") or {}),
                                        answer.get("body") or {})
                    if sub.status in (429, 503):
                        waits.append(sub)
                    elif sub.status == 401 and not refresh:
                        retry_auth = True
                    else:
                        results[index] = sub
                        del chunk[index]
                if not chunk:
                    break
                if waits:
                    # The longest wait any sub-request was given holds for the whole mailbox.
                    longest = max(waits, key=lambda r: retry_after_seconds(r.header("Retry-After"), 0.0))
                    self._throttle(longest, attempt)
                if retry_auth:
                    refresh = True
            if chunk:
                raise Unavailable("Microsoft Graph kept failing part of a batch.")
        return [results[i] for i in range(len(requests_))]

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()


def check(resp: GraphResponse) -> GraphResponse:
    """Map an error answer to a domain error; return successful ones."""
    if 200 <= resp.status < 300:
        return resp
    code = ""
    if isinstance(resp.body, dict) and isinstance(resp.body.get("error"), dict):
        code = str(resp.body["error"].get("code", ""))[:80]
    detail = f" ({resp.status}{', ' + code if code else ''})"
    if resp.status == 410:
        raise CursorExpired(f"Microsoft Graph's sync state expired{detail}.")
    if resp.status in (401, 403):
        raise AuthRevoked(f"Microsoft 365 refused access to the mailbox{detail}. Connect Microsoft 365 again.")
    if resp.status in (429, 503):
        raise Throttled(f"Microsoft Graph is busy{detail}.",
                        retry_after=retry_after_seconds(resp.header("Retry-After"), 60.0))
    raise Unavailable(f"Microsoft Graph answered an error{detail}.")


def _parse_time(value: Any, zone: str = "UTC") -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        try:
            tz: Any = UTC if zone in ("", "UTC", "tzone://Microsoft/Utc") else ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            tz = UTC  # we ask for UTC (Prefer: outlook.timezone); Windows zone names are not IANA
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)


def _address(value: Any) -> Address | None:
    if not isinstance(value, dict):
        return None
    inner = value.get("emailAddress") or {}
    return Address.of(inner.get("address"), inner.get("name")) if isinstance(inner, dict) else None


def _addresses(values: Any) -> tuple[tuple[Address, ...], bool]:
    found = [a for a in (_address(v) for v in (values or [])) if a is not None]
    return tuple(found[:MAX_RECIPIENTS]), len(found) > MAX_RECIPIENTS


def _body_text(value: Any) -> tuple[str, bool]:
    content = value.get("content", "") if isinstance(value, dict) else ""
    return bound_text(str(content or ""))


def _sensitivity_of_message(data: Mapping[str, Any]) -> Sensitivity:
    for prop in data.get("singleValueExtendedProperties") or []:
        pid = str(prop.get("id", "")).lower().replace(" ", "")
        if pid in {"integer0x0036", "integer0x36"}:
            try:
                return _SENSITIVITY_CODES.get(int(str(prop.get("value", "0"))), Sensitivity.NORMAL)
            except ValueError:
                return Sensitivity.NORMAL
    return Sensitivity.NORMAL


def _sensitivity(value: Any) -> Sensitivity:
    try:
        return Sensitivity(str(value or "normal").lower())
    except ValueError:
        return Sensitivity.NORMAL


def parse_email(data: Mapping[str, Any], folder: Folder) -> EmailItem:
    """A Graph message as an :class:`EmailItem`."""
    to, to_cut = _addresses(data.get("toRecipients"))
    cc, cc_cut = _addresses(data.get("ccRecipients"))
    body, body_cut = _body_text(data.get("body"))
    return EmailItem(
        remote_id=str(data["id"]),
        folder=folder,
        message_id=normalise_message_id(data.get("internetMessageId")),
        sender=_address(data.get("from")) or _address(data.get("sender")),
        to=to,
        cc=cc,
        subject=str(data.get("subject") or ""),
        body_text=body,
        sent_at=_parse_time(data.get("sentDateTime")),
        received_at=_parse_time(data.get("receivedDateTime")),
        sensitivity=_sensitivity_of_message(data),
        is_draft=bool(data.get("isDraft", False)),
        truncated=to_cut or cc_cut or body_cut,
    )


def parse_event(data: Mapping[str, Any]) -> EventItem:
    """A Graph event (one instance from calendarView) as an :class:`EventItem`."""
    attendees, cut = _addresses(data.get("attendees"))
    body, body_cut = _body_text(data.get("body"))
    start = data.get("start") or {}
    end = data.get("end") or {}
    kind = str(data.get("type") or "singleInstance")
    location = data.get("location") or {}
    return EventItem(
        remote_id=str(data["id"]),
        uid=str(data.get("iCalUId") or data["id"]),
        subject=str(data.get("subject") or ""),
        body_text=body,
        location=str(location.get("displayName", "") if isinstance(location, dict) else ""),
        start=_parse_time(start.get("dateTime"), str(start.get("timeZone", "UTC"))),
        end=_parse_time(end.get("dateTime"), str(end.get("timeZone", "UTC"))),
        is_all_day=bool(data.get("isAllDay", False)),
        organizer=_address(data.get("organizer")),
        attendees=attendees,
        sensitivity=_sensitivity(data.get("sensitivity")),
        is_cancelled=bool(data.get("isCancelled", False)),
        is_recurring=kind in {"occurrence", "exception", "seriesMaster"},
        occurrence_start=_parse_time(data.get("originalStart")) if kind in {"occurrence", "exception"} else None,
        truncated=cut or body_cut,
    )


def identity_from(data: Mapping[str, Any]) -> MailboxIdentity:
    """A :class:`MailboxIdentity` from ``/me`` (mail, userPrincipalName, proxyAddresses)."""
    mail = str(data.get("mail") or "").strip().lower()
    upn = str(data.get("userPrincipalName") or "").strip().lower()
    primary = mail or upn
    if not primary:
        raise Unavailable("Microsoft Graph returned no address for this mailbox.")
    aliases = {upn} if upn and "@" in upn else set()
    for proxy in data.get("proxyAddresses") or []:
        scheme, _, address = str(proxy).partition(":")
        # "SMTP:" marks the primary address, "smtp:" the others; x500:, sip: ... are not mail.
        if scheme.lower() == "smtp" and "@" in address:
            aliases.add(address.strip().lower())
    aliases.discard(primary)
    return MailboxIdentity(primary=primary, aliases=frozenset(aliases), display_name=str(data.get("displayName") or ""))


@dataclass
class _Round:
    """Where a folder's read starts: the path, the calendar range end it is bound to, and why."""

    path: str
    range_end: float
    resynced: bool = False  # the saved cursor was unusable: the window is read again
    roll: bool = False  # the calendar range is stale: read it to its end, then start a new round


class GraphMailbox:
    """The Mailbox protocol over Microsoft Graph for one mailbox."""

    provider: ClassVar[str] = "microsoft"

    def __init__(self, settings: Settings, tokens: TokenSource, gate_key: str, user_path: str = "/me",
                 session: requests.Session | None = None) -> None:
        self.settings = settings
        self.client = GraphClient(settings, tokens, gate_key, session)
        self.user_path = user_path
        self.page_size = settings.GRAPH_PAGE_SIZE

    @property
    def calls(self) -> int:
        """Graph requests made so far."""
        return self.client.calls

    def close(self) -> None:
        """Release connections."""
        self.client.close()

    def identity(self) -> MailboxIdentity:
        """Primary address and aliases from ``/me`` (or ``/users/{id}``)."""
        resp = self.client.get(f"{self.user_path}?$select=mail,userPrincipalName,proxyAddresses,displayName")
        if not isinstance(resp.body, dict):
            raise Unavailable("Microsoft Graph returned an unexpected profile.")
        return identity_from(resp.body)

    def _prefer(self, folder: Folder) -> dict[str, str]:
        prefer = f'odata.maxpagesize={self.page_size}, outlook.body-content-type="text"'
        if folder is Folder.CALENDAR:
            prefer += ', outlook.timezone="UTC"'
        return {"Prefer": prefer}

    def initial_path(self, folder: Folder, window: SyncWindow) -> str:
        """The first request of a round for ``folder`` reading the window."""
        if folder is Folder.CALENDAR:
            query = {"startDateTime": _iso(window.events_from), "endDateTime": _iso(window.events_to)}
            return f"{self.user_path}/calendarView/delta?{urlencode(query, safe=_QUERY_SAFE, quote_via=quote)}"
        query = {
            "$select": ",".join(MESSAGE_FIELDS),
            "$expand": f"singleValueExtendedProperties($filter=id eq '{SENSITIVITY_PROPERTY}')",
            "$filter": f"receivedDateTime ge {_iso(window.mail_since)}",
        }
        folder_id = _MAIL_FOLDER_IDS[folder]
        return f"{self.user_path}/mailFolders/{folder_id}/messages/delta?" \
               f"{urlencode(query, safe=_QUERY_SAFE, quote_via=quote)}"

    def _start_path(self, folder: Folder, cursor: str, window: SyncWindow) -> _Round:
        """Where to start reading ``folder``: the saved link, or the window's first request."""
        fresh = _Round(self.initial_path(folder, window), window.events_to.timestamp(), resynced=bool(cursor))
        if not cursor:
            return fresh
        link, range_end = _split_cursor(folder, cursor)
        try:
            path = self.client.relative(link)
        except CursorExpired:
            log.warning("graph cursor for %s points elsewhere; resyncing", folder.value)
            return fresh
        mode = "/me/" if self.user_path == "/me" else "/users/"
        if not path.lower().startswith(mode):
            # Saved for the other way of addressing the mailbox (delegated vs app-only): the
            # token we hold now cannot read it.
            return fresh
        roll = False
        if folder is Folder.CALENDAR:
            roll_before = (window.events_to - timedelta(days=CALENDAR_ROLL_DAYS)).timestamp()
            roll = range_end is None or range_end <= roll_before
        return _Round(path, range_end or 0.0, roll=roll)

    def read_changes(
        self, cursors: Mapping[str, str], window: SyncWindow, folders: tuple[Folder, ...] = tuple(Folder)
    ) -> Iterator[ChangePage]:
        """Yield pages of changes per folder; the first page of every folder comes in one ``$batch``."""
        wanted = tuple(Folder(f) for f in (folders or FOLDERS))
        starts = {f: self._start_path(f, cursors.get(f.value, ""), window) for f in wanted}
        firsts: dict[Folder, GraphResponse | None] = {f: None for f in wanted}
        if len(wanted) > 1:
            answers = self.client.batch([GraphRequest(starts[f].path, self._prefer(f)) for f in wanted])
            firsts = dict(zip(wanted, answers, strict=True))
        for folder in wanted:
            yield from self._read_folder(folder, starts[folder], firsts[folder], window)

    def _read_folder(self, folder: Folder, start: _Round, first: GraphResponse | None,
                     window: SyncWindow) -> Iterator[ChangePage]:
        seen: set[str] = set()
        path, range_end, resynced, roll = start.path, start.range_end, start.resynced, start.roll
        response = first
        while True:
            try:
                if response is None:
                    response = self.client.get(path, self._prefer(folder))
                else:
                    response = check(response)
            except CursorExpired:
                if resynced:
                    # Bounded: one resync per folder per run; the next run starts over again.
                    raise
                log.info("graph sync state expired for %s; resyncing from the window", folder.value)
                resynced, roll = True, False
                path, response = self.initial_path(folder, window), None
                range_end = window.events_to.timestamp()
                continue
            page, next_link = self._page(folder, response, seen, resynced, range_end)
            yield page
            if not next_link:
                if not roll:
                    return
                # The old range is read to its end: start a round over the current window. Not a
                # resync: a 410 in the new round may still resync once.
                log.info("graph calendar range rolled forward to the current window")
                roll = False
                path, response = self.initial_path(folder, window), None
                range_end = window.events_to.timestamp()
                continue
            try:
                path = self.client.relative(next_link)
            except CursorExpired:
                raise Unavailable("Microsoft Graph returned a link to another host.") from None
            response = None

    def _page(self, folder: Folder, response: GraphResponse, seen: set[str],
              resynced: bool, range_end: float) -> tuple[ChangePage, str]:
        body = response.body if isinstance(response.body, dict) else {}
        next_link = str(body.get("@odata.nextLink") or "")
        delta_link = str(body.get("@odata.deltaLink") or "")
        if not next_link and not delta_link:
            raise Unavailable("Microsoft Graph returned a delta page without a link.")
        cursor = next_link or delta_link
        if folder is Folder.CALENDAR:
            cursor = _calendar_cursor(cursor, range_end)
        page = ChangePage(folder=folder, cursor=cursor, last=not next_link, resynced=resynced)
        for entry in body.get("value") or []:
            if not isinstance(entry, dict) or not entry.get("id"):
                continue
            remote_id = str(entry["id"])
            if "@removed" in entry:
                page.deletions.append(Deletion(remote_id=remote_id, folder=folder))
                seen.discard(remote_id)
                continue
            if remote_id in seen:
                # After a resync the window is read again: what this run already yielded is skipped.
                continue
            try:
                if folder is Folder.CALENDAR:
                    page.events.append(parse_event(entry))
                else:
                    page.emails.append(parse_email(entry, folder))
            except (KeyError, TypeError, ValueError, AttributeError):
                log.warning("graph item skipped (unreadable) folder=%s id=%s", folder.value, fingerprint(remote_id))
                page.unreadable += 1
                continue
            seen.add(remote_id)
        return page, next_link


def graph_identity(settings: Settings, access_token: str, user_path: str = "/me",
                   session: requests.Session | None = None) -> MailboxIdentity:
    """Read who an access token's mailbox is (the consent dialog and the on-behalf-of hook use this)."""
    mailbox = GraphMailbox(settings, StaticToken(access_token), f"token:{fingerprint(access_token)}", user_path,
                           session)
    try:
        return mailbox.identity()
    finally:
        if session is None:
            mailbox.close()


def open_mailbox(ctx: Any) -> GraphMailbox:
    """The Graph connector for a sync mailbox (``ctx`` is a :class:`backend.connectors.MailboxContext`)."""
    settings: Settings = ctx.settings
    session = ctx.clients.get("http_session")
    auth = MicrosoftAuth(settings, session)
    connection = ctx.connection or {}
    tokens: TokenSource
    if connection.get("app_only"):
        # Tenant-wide activation: application permissions after admin consent, /users/{id} paths.
        user_id = str(connection.get("user_id") or connection.get("object_id") or ctx.address)
        tokens = AppOnlyTokens(auth, str(connection.get("tenant_id", "")))
        user_path = f"/users/{quote(user_id, safe='@.')}"
    else:
        tokens = MailboxTokens(auth, ctx.secrets, connection)
        user_path = "/me"
    return GraphMailbox(settings, tokens, ctx.mailbox_id, user_path, session or auth.session)
