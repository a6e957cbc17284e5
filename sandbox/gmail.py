"""A fake Gmail API (v1) at the wire protocol: profile, send-as, messages.list/get, history.list, batch.

Served on loopback https under ``/gmail/v1`` and ``/batch/gmail/v1`` of the fake Google host
(:func:`sandbox.google.create_app`); the product reaches it only through ``GMAIL_API_URL``.
Access tokens are the ones :mod:`sandbox.google` issued; ``users/me`` is the token's account.

Behaviour kept from Gmail: ``messages.list`` takes repeated ``labelIds`` (all must match), ``q``
with ``after:``/``before:`` (epoch seconds or dates), leaves SPAM and TRASH out, answers ids only,
newest first, at most 500 a page; ``history.list`` returns the records after ``startHistoryId``
(filtered by ``historyTypes`` and ``labelId``) with the mailbox's current ``historyId``, and 404
once the start is older than the history kept (:meth:`FakeGmailState.expire_history`); a token
holding ``gmail.metadata`` cannot use ``q`` or ``format=full``. Batch takes at most 100 parts.
Quota units are counted per request as Google counts them (:mod:`sandbox.google_faults`).
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask, Response, request

from sandbox.google import GMAIL_METADATA, GMAIL_READONLY, FakeGoogleState, TokenInfo
from sandbox.google_faults import Faults, Garbled, google_error
from sandbox.pubsub import FakePubSub, register_pubsub
from sandbox.server import Recorder

SYSTEM_LABELS = ("INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "IMPORTANT")
UNITS = {"profile": 1, "sendAs": 1, "messages.list": 5, "messages.get": 5, "history": 2}
MAX_BATCH_PARTS = 100
_SENSITIVITY_HEADER = {"personal": "Personal", "private": "Private", "confidential": "Company-Confidential"}
Answer = tuple[int, dict[str, str], Any]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode().rstrip("=")


@dataclass
class GMessage:
    """A message in a fake mailbox."""

    id: str
    thread_id: str
    labels: set[str]
    headers: list[tuple[str, str]]
    body: str
    internal_ms: int
    history_id: int
    deleted: bool = False


@dataclass
class GMailbox:
    """One account's mail and its history."""

    email: str
    messages: dict[str, GMessage] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    history_id: int = 1000
    # The oldest startHistoryId still answered; older ones get 404.
    min_history: int = 0


@dataclass
class FakeGmailState:
    """Mailboxes of the fake Gmail; tests seed and change them directly."""

    google: FakeGoogleState
    base_url: str = ""
    mailboxes: dict[str, GMailbox] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    lock: threading.RLock = field(default_factory=threading.RLock)
    recorder: Recorder | None = None
    # Number of parts of every batch request, in order.
    batch_sizes: list[int] = field(default_factory=list)
    pubsub: FakePubSub = field(init=False)

    def __post_init__(self) -> None:
        self.pubsub = FakePubSub(self)

    # --- seeding --------------------------------------------------------------------------------

    def mailbox(self, address: str) -> GMailbox:
        """The mailbox of an account of the OAuth fake (created on first use)."""
        user = self.google.find_user(address)
        assert user is not None, f"unknown Google account {address}"
        with self.lock:
            if user.email not in self.mailboxes:
                self.mailboxes[user.email] = GMailbox(user.email)
            return self.mailboxes[user.email]

    def _record(self, box: GMailbox, kind: str, message: GMessage, labels: list[str] | None = None) -> None:
        box.history_id += 1
        message.history_id = box.history_id
        ref = {"id": message.id, "threadId": message.thread_id, "labelIds": sorted(message.labels)}
        entry: dict[str, Any] = {"id": str(box.history_id), "messages": [{"id": message.id,
                                                                           "threadId": message.thread_id}]}
        if kind in ("messagesAdded", "messagesDeleted"):
            entry[kind] = [{"message": ref}]
        else:
            entry[kind] = [{"message": ref, "labelIds": labels or []}]
        # The labels the message had at that moment (before a removal or deletion): labelId filters on them.
        entry["_labels"] = sorted(message.labels | set(labels or []))
        box.history.append(entry)
        self.pubsub.recorded(box.email, box.history_id, set(entry["_labels"]))

    def add_message(self, address: str, labels: list[str] | tuple[str, ...] = ("INBOX",), *, subject: str = "Hello",
                    sender: str = "", to: list[str] | None = None, cc: list[str] | None = None, body: str = "",
                    message_id: str | None = None, when: datetime | None = None,
                    sensitivity: str = "normal") -> str:
        """Put a message in the mailbox with ``labels`` (INBOX, SENT, DRAFT, SPAM ...); returns its id."""
        box = self.mailbox(address)
        moment = when or datetime.now(tz=UTC)
        sent = "SENT" in labels
        sender = sender or (box.email if sent else "someone@example.net")
        headers = [
            ("From", sender), ("To", ", ".join(to or [box.email])),
            ("Subject", subject), ("Date", email.utils.format_datetime(moment.astimezone(UTC))),
            ("Message-ID", message_id if message_id is not None else f"<{uuid.uuid4().hex}@mail.gmail.com>"),
            ("MIME-Version", "1.0"),
        ]
        if cc:
            headers.insert(2, ("Cc", ", ".join(cc)))
        if sensitivity in _SENSITIVITY_HEADER:
            headers.append(("Sensitivity", _SENSITIVITY_HEADER[sensitivity]))
        gid = uuid.uuid4().hex[:16]
        message = GMessage(gid, gid, set(labels), headers, body, int(moment.timestamp() * 1000), 0)
        with self.lock:
            box.messages[gid] = message
            self._record(box, "messagesAdded", message)
        return gid

    def delete_message(self, gid: str) -> None:
        """Delete a message for good (history: messagesDeleted)."""
        box, message = self._find(gid)
        with self.lock:
            message.deleted = True
            self._record(box, "messagesDeleted", message)

    def change_labels(self, gid: str, add: list[str] | tuple[str, ...] = (),
                      remove: list[str] | tuple[str, ...] = ()) -> None:
        """Add and remove labels (moving mail: labelsAdded / labelsRemoved in the history)."""
        box, message = self._find(gid)
        with self.lock:
            if remove:
                gone = [label for label in remove if label in message.labels]
                self._record(box, "labelsRemoved", message, gone)
                message.labels -= set(gone)
            if add:
                message.labels |= set(add)
                self._record(box, "labelsAdded", message, list(add))

    def _find(self, gid: str) -> tuple[GMailbox, GMessage]:
        with self.lock:
            for box in self.mailboxes.values():
                if gid in box.messages:
                    return box, box.messages[gid]
        raise KeyError(gid)

    def expire_history(self, address: str | None = None) -> None:
        """Drop the history kept so far: every older startHistoryId answers 404 (the current one stays valid)."""
        with self.lock:
            for box in self.mailboxes.values():
                if address is None or box.email == address.lower():
                    box.min_history = box.history_id

    def units(self, address: str | None = None) -> int:
        """Quota units spent (by one mailbox, or all)."""
        return self.faults.total_units(address.lower() if address else None)

    def tag_of(self, environ: dict[str, Any]) -> str:
        """The Recorder tag of a request: the account of its token."""
        info = self.google.token_info(environ.get("HTTP_AUTHORIZATION"))
        return info.email if info else ""

    # --- requests ---------------------------------------------------------------------------------

    def handle(self, method: str, url: str, info: TokenInfo | None, in_batch: bool = False) -> Answer:
        """One Gmail request (top level or a batch part): (status, headers, JSON body)."""
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True)
        injected = self.faults.check(parts.path, in_batch)
        if injected is not None:
            return injected
        if info is None:
            return 401, {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}, google_error(
                401, "authError", "Request had invalid authentication credentials.")
        if GMAIL_READONLY not in info.scopes and GMAIL_METADATA not in info.scopes:
            return 403, {}, google_error(403, "insufficientPermissions", "Request had insufficient authentication "
                                                                         "scopes.")
        match = re.fullmatch(r"/gmail/v1/users/([^/]+)/(.+)", parts.path)
        if method != "GET" or match is None:
            return 404, {}, google_error(404, "notFound", "Not Found")
        user, rest = match.group(1), match.group(2)
        if user not in ("me", info.email):
            return 403, {}, google_error(403, "forbidden", "Delegation denied for " + info.email)
        account = self.google.find_user(info.email)
        if account is not None and not account.gmail_enabled:
            # Gmail turned off for the person's organisational unit: Google's answer to every call.
            return 400, {}, google_error(400, "failedPrecondition", "Mail service not enabled",
                                         "FAILED_PRECONDITION")
        box = self.mailbox(info.email)
        metadata_only = GMAIL_METADATA in info.scopes
        if rest == "profile":
            self.faults.spend(box.email, UNITS["profile"])
            with self.lock:
                total = sum(1 for m in box.messages.values() if not m.deleted)
                return 200, {}, {"emailAddress": box.email, "messagesTotal": total, "threadsTotal": total,
                                 "historyId": str(box.history_id)}
        if rest == "settings/sendAs":
            self.faults.spend(box.email, UNITS["sendAs"])
            if metadata_only:
                return 403, {}, google_error(403, "insufficientPermissions", "Metadata scope doesn't allow this.")
            return 200, {}, {"sendAs": self._send_as(box)}
        if rest == "messages":
            self.faults.spend(box.email, UNITS["messages.list"])
            if metadata_only and query.get("q"):
                return 403, {}, google_error(403, "forbidden", "Metadata scope does not support 'q' parameter")
            return self._list(box, query)
        if rest.startswith("messages/"):
            self.faults.spend(box.email, UNITS["messages.get"])
            fmt = (query.get("format") or ["full"])[-1]
            if metadata_only and fmt in ("full", "raw"):
                return 403, {}, google_error(403, "forbidden", "Metadata scope doesn't allow format FULL")
            return self._get(box, rest.split("/", 1)[1], fmt)
        if rest == "history":
            self.faults.spend(box.email, UNITS["history"])
            return self._history(box, query)
        return 404, {}, google_error(404, "notFound", "Not Found")

    def _send_as(self, box: GMailbox) -> list[dict[str, Any]]:
        user = self.google.find_user(box.email)
        aliases = user.aliases if user else []
        entries: list[dict[str, Any]] = [{"sendAsEmail": box.email, "displayName": user.display_name if user else "",
                                          "replyToAddress": "", "signature": "", "isPrimary": True,
                                          "isDefault": True}]
        entries += [{"sendAsEmail": a, "displayName": "", "replyToAddress": "", "signature": "",
                     "treatAsAlias": True, "verificationStatus": "accepted"} for a in aliases]
        return entries

    @staticmethod
    def _bounds(q: str) -> tuple[float, float] | None:
        after, before = 0.0, float("inf")
        for term in q.split():
            name, _, value = term.partition(":")
            if name not in ("after", "before") or not value:
                return None
            try:
                moment = float(value) if value.isdigit() else datetime.strptime(value, "%Y/%m/%d").replace(
                    tzinfo=UTC).timestamp()
            except ValueError:
                return None
            if name == "after":
                after = moment
            else:
                before = moment
        return after, before

    @staticmethod
    def _page_args(query: dict[str, list[str]], limit: int = 500) -> tuple[int, int] | None:
        try:
            size = min(int((query.get("maxResults") or ["100"])[-1]), limit)
            offset = int((query.get("pageToken") or ["0"])[-1] or 0)
        except ValueError:
            return None
        return max(1, size), max(0, offset)

    def _list(self, box: GMailbox, query: dict[str, list[str]]) -> Answer:
        bounds = self._bounds((query.get("q") or [""])[-1])
        paging = self._page_args(query)
        if bounds is None or paging is None:
            return 400, {}, google_error(400, "invalidArgument", "Invalid query or page token.")
        size, offset = paging
        wanted = set(query.get("labelIds") or [])
        spam_trash = (query.get("includeSpamTrash") or ["false"])[-1] == "true"
        with self.lock:
            found = sorted(
                (m for m in box.messages.values()
                 if not m.deleted and wanted <= m.labels and (spam_trash or not m.labels & {"SPAM", "TRASH"})
                 and bounds[0] < m.internal_ms / 1000 < bounds[1]),
                key=lambda m: m.internal_ms, reverse=True)
        chunk = found[offset:offset + size]
        body: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if chunk:
            body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in chunk]
        if offset + size < len(found):
            body["nextPageToken"] = str(offset + size)
        return 200, {}, body

    def _get(self, box: GMailbox, gid: str, fmt: str) -> Answer:
        with self.lock:
            message = box.messages.get(gid)
            if message is None or message.deleted:
                return 404, {}, google_error(404, "notFound", "Requested entity was not found.")
            resource: dict[str, Any] = {
                "id": message.id, "threadId": message.thread_id, "labelIds": sorted(message.labels),
                "snippet": message.body[:100], "historyId": str(message.history_id),
                "internalDate": str(message.internal_ms), "sizeEstimate": len(message.body) + 500,
            }
            if fmt == "minimal":
                return 200, {}, resource
            headers = [{"name": n, "value": v} for n, v in message.headers]
            if fmt == "metadata":
                resource["payload"] = {"mimeType": "multipart/alternative", "headers": headers}
                return 200, {}, resource
            html_body = "<div dir=\"ltr\">" + message.body.replace("\n", "<br>") + "</div>"
            resource["payload"] = {
                "partId": "", "mimeType": "multipart/alternative", "filename": "",
                "headers": [*headers, {"name": "Content-Type", "value": 'multipart/alternative; boundary="b1"'}],
                "body": {"size": 0},
                "parts": [
                    {"partId": "0", "mimeType": "text/plain", "filename": "",
                     "headers": [{"name": "Content-Type", "value": 'text/plain; charset="UTF-8"'}],
                     "body": {"size": len(message.body), "data": _b64(message.body)}},
                    {"partId": "1", "mimeType": "text/html", "filename": "",
                     "headers": [{"name": "Content-Type", "value": 'text/html; charset="UTF-8"'}],
                     "body": {"size": len(html_body), "data": _b64(html_body)}},
                ],
            }
        return 200, {}, resource

    def _history(self, box: GMailbox, query: dict[str, list[str]]) -> Answer:
        try:
            start = int((query.get("startHistoryId") or [""])[-1])
        except ValueError:
            return 400, {}, google_error(400, "invalidArgument", "Invalid startHistoryId")
        paging = self._page_args(query)
        if paging is None:
            return 400, {}, google_error(400, "invalidArgument", "Invalid page token.")
        size, offset = paging
        types = set(query.get("historyTypes") or [])
        label = (query.get("labelId") or [""])[-1]
        with self.lock:
            if start < box.min_history:
                return 404, {}, google_error(404, "notFound", "Requested entity was not found.")
            records = [r for r in box.history if int(r["id"]) > start
                       and (not types or any(_PLURAL.get(t, t) in r for t in types))
                       and (not label or label in r["_labels"])]
            current = box.history_id
        chunk = [{k: v for k, v in r.items() if not k.startswith("_")} for r in records[offset:offset + size]]
        body: dict[str, Any] = {"historyId": str(current)}
        if chunk:
            body["history"] = chunk
        if offset + size < len(records):
            body["nextPageToken"] = str(offset + size)
        return 200, {}, body


_PLURAL = {"messageAdded": "messagesAdded", "messageDeleted": "messagesDeleted", "labelAdded": "labelsAdded",
           "labelRemoved": "labelsRemoved"}


def _json_response(status: int, headers: dict[str, str], body: Any) -> Response:
    resp = Response(json.dumps(body), status=status, mimetype="application/json")
    for name, value in headers.items():
        resp.headers[name] = value
    return resp


def _batch_parts(content_type: str, raw: bytes) -> list[tuple[str, str]] | None:
    """(Content-ID, inner request line) of each part of a multipart/mixed batch body."""
    envelope = message_from_bytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw, policy=HTTP)
    if not envelope.is_multipart():
        return None
    parts: list[tuple[str, str]] = []
    for part in envelope.iter_parts():  # type: ignore[attr-defined]
        payload = part.get_payload(decode=True) or b""
        first = payload.decode("utf-8", "replace").lstrip("\r\n").split("\r\n", 1)[0].split("\n", 1)[0]
        parts.append((str(part.get("Content-ID", "")), first))
    return parts


def register_gmail(app: Flask, state: FakeGmailState) -> None:
    """Add the Gmail endpoints (and Gmail push: watch, stop, the certificates) to a fake Google app."""
    register_pubsub(app, state.pubsub)

    @app.get("/gmail/v1/users/<path:rest>")
    def gmail_get(rest: str) -> Any:
        info = state.google.token_info(request.headers.get("Authorization"))
        return _json_response(*state.handle("GET", request.full_path, info))

    @app.post("/batch/gmail/v1")
    def gmail_batch() -> Any:
        info = state.google.token_info(request.headers.get("Authorization"))
        injected = state.faults.check("/batch/gmail/v1")
        if injected is not None:
            return _json_response(*injected)
        parts = _batch_parts(request.headers.get("Content-Type", ""), request.get_data())
        if not parts or len(parts) > MAX_BATCH_PARTS:
            return _json_response(400, {}, google_error(400, "invalidArgument", "A batch holds 1 to 100 parts."))
        with state.lock:
            state.batch_sizes.append(len(parts))
        boundary = "batch_" + uuid.uuid4().hex
        chunks: list[str] = []
        for content_id, line in parts:
            method, _, rest = line.partition(" ")
            url = rest.rsplit(" HTTP/", 1)[0]
            status, headers, body = state.handle(method, url, info, in_batch=True)
            reason = {200: "OK", 404: "Not Found", 401: "Unauthorized", 403: "Forbidden",
                      429: "Too Many Requests", 500: "Internal Server Error",
                      503: "Service Unavailable"}.get(status, "Error")
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            response_id = content_id.replace("<", "<response-", 1) if content_id else ""
            chunks.append(f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {response_id}\r\n\r\n"
                          f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=UTF-8\r\n{extra}"
                          f"\r\n{body if isinstance(body, Garbled) else json.dumps(body)}\r\n")
        payload = "".join(chunks) + f"--{boundary}--\r\n"
        return Response(payload, status=200, content_type=f"multipart/mixed; boundary={boundary}")


def serve_google(cert: Any, google: FakeGoogleState | None = None) -> tuple[Any, Any, Any, Any]:
    """Start one fake Google host (OAuth, Gmail, Calendar); returns (google, gmail, calendar, FakeServer)."""
    from sandbox.google import create_app
    from sandbox.google_calendar import FakeCalendarState
    from sandbox.server import FakeServer

    google = google or FakeGoogleState()
    gmail = FakeGmailState(google)
    calendar = FakeCalendarState(google, faults=gmail.faults)
    recorder = Recorder(create_app(google, gmail, calendar), tag_of=gmail.tag_of)
    gmail.recorder = recorder
    server = FakeServer(recorder, cert).start()
    for state in (google, gmail, calendar):
        state.base_url = server.url
    return google, gmail, calendar, server
