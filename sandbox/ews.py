"""A fake on-premises Exchange server at the SOAP level (EWS) plus POX Autodiscover, on loopback https.

exchangelib and requests_ntlm talk to it unchanged. What it implements, and how faithfully:

* **Authentication** as IIS does it: a request without credentials gets ``401`` with one
  ``WWW-Authenticate`` header per enabled method (``NTLM``, ``Basic realm=...``). Basic credentials
  are checked on every request. NTLM is the real three-message handshake, bound to the TCP
  connection (keep-alive, as IIS): type 1 -> ``401`` with a type 2 challenge (fresh server challenge,
  target info), type 3 -> the user is looked up by (domain, user name) and its **NTLMv2 NT response
  is recomputed from the stored password and compared**; the connection is then authenticated for
  its later requests. Not verified: the MIC and channel bindings (we accept what the client sends),
  NTLMv1/LM responses (refused). A user is found by email address (domain empty, as exchangelib
  sends ``\\user@domain``) or by ``DOMAIN\\account``.
* **Version**: every SOAP response carries ``ServerVersionInfo`` (Exchange 2016 by default).
* **Operations**: ConvertId (exchangelib's version probe; always ``ErrorInvalidIdMalformed``, as a
  real server answers the dummy id), ResolveNames (directory users by address, alias, account name or
  display-name prefix; ``ReturnFullContactData`` adds the contact with ``SMTP:``/``smtp:`` entries),
  GetFolder (root, msgfolderroot, inbox, sentitems, calendar), FindItem (paging and simple
  date/text restrictions), GetItem (only the requested properties), SyncFolderItems with real sync
  states: each state is a signed token naming (mailbox, folder, change sequence, epoch); a call
  returns the net changes after that sequence, at most ``MaxChangesReturned`` (capped at 512) per
  call, oldest first, with ``IncludesLastItemInRange``. A forged, foreign or expired state answers
  ``ErrorInvalidSyncStateData``. Like Exchange, SyncFolderItems and FindItem refuse ``item:Body``.
* **Failures** on demand (:meth:`FakeEwsState.inject_failure`): ``throttle`` (HTTP 500 SOAP fault
  ``ErrorServerBusy`` with ``BackOffMilliseconds``), ``503`` (with ``Retry-After``), ``unavailable``
  (502 from a proxy), ``500`` (an HTML error page), ``not_ews`` (a 200 HTML page), ``delay`` (sleep
  ``retry_after`` seconds, then answer normally), ``disconnect`` (drop the connection) and ``drip``
  (send the status line and headers at once, then the body one byte every ``retry_after`` seconds,
  giving up after ``DRIP_LIMIT_SECONDS``: a server that never trips a per-read timeout).
* **Autodiscover** (POX, ``POST /autodiscover/autodiscover.xml``): authenticated like EWS; answers
  the EWS URL for a known address, an error for an unknown one, or a configured redirect: an HTTP
  redirect, a ``redirectAddr`` per address, or a ``redirectUrl`` per ``Host`` the request came to
  (one server can play several host names when the test resolves them all to it).
* **Identity tokens**: :meth:`FakeEwsState.identity_token` mints what ``getUserIdentityTokenAsync``
  returns (RS256, ``x5t``, ``appctx`` JSON with ``msexchuid``/``version``/``amurl``, string
  ``nbf``/``exp``), signed with the server's key, whose self-signed certificate the authentication
  metadata document at ``GET /autodiscover/metadata/json/1`` publishes (anonymous, as Exchange does);
  ``metadata_override`` serves other bytes there (malformed documents).

The mailbox is seeded and changed through :class:`FakeEwsState` methods, which append to a change
log; that log is what sync states point into.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import itertools
import json
import os
import secrets
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from spnego._ntlm_raw.crypto import compute_response_v2, ntowfv1, ntowfv2
from spnego._ntlm_raw.messages import (
    Authenticate,
    AvId,
    Challenge,
    FileTime,
    Negotiate,
    NegotiateFlags,
    NTClientChallengeV2,
    TargetInfo,
)
from spnego._ntlm_raw.messages import Version as NtlmVersion

from sandbox import autodiscover_v2
from sandbox.server import FakeServer, Recorder
from sandbox.tls import CertPair

NS_S = "http://schemas.xmlsoap.org/soap/envelope/"
NS_M = "http://schemas.microsoft.com/exchange/services/2006/messages"
NS_T = "http://schemas.microsoft.com/exchange/services/2006/types"
NS_E = "http://schemas.microsoft.com/exchange/services/2006/errors"
NS_AD_REQ = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
NS_AD = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
NS_AD_OUT = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
S, M, T, E = (f"{{{ns}}}" for ns in (NS_S, NS_M, NS_T, NS_E))

EWS_PATH = "/EWS/Exchange.asmx"
AUTODISCOVER_PATH = "/autodiscover/autodiscover.xml"
METADATA_PATH = "/autodiscover/metadata/json/1"
EXCHANGE_PRINCIPAL = "00000002-0000-0ff1-ce00-000000000000"
MAX_SYNC_CHANGES = 512
# A dripping response gives up (and closes) after this long, so a client without a deadline ends too.
DRIP_LIMIT_SECONDS = 15.0
FOLDERS = ("inbox", "sentitems", "calendar")
FOLDER_INFO = {
    "root": ("Folder", "", "Top of Information Store"),
    "msgfolderroot": ("Folder", "IPF.Note", "Top of Information Store"),
    "inbox": ("Folder", "IPF.Note", "Inbox"),
    "sentitems": ("Folder", "IPF.Note", "Sent Items"),
    "calendar": ("CalendarFolder", "IPF.Appointment", "Calendar"),
}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_dt(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def x5t_of(der: bytes) -> str:
    """The x5t thumbprint of a DER certificate: base64url(SHA-1), unpadded."""
    return base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()


def new_signing_key(name: str) -> tuple[Any, bytes]:
    """An RSA key and a self-signed certificate (DER) for it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.DER)


def _new_id(prefix: str = "AAMkAD") -> str:
    return prefix + base64.b64encode(os.urandom(24)).decode()


@dataclass
class EwsUser:
    """A directory user with a mailbox."""

    email: str
    password: str
    account: str  # sAMAccountName, for DOMAIN\\account logins
    domain: str = "ACME"
    display_name: str = ""
    aliases: list[str] = field(default_factory=list)
    # Hidden from address lists: the user signs in, but ResolveNames does not find it.
    hidden: bool = False

    def matches_login(self, domain: str, name: str) -> bool:
        """True when (domain, name) from NTLM or Basic names this user."""
        name = name.lower()
        if not domain:
            return name in {self.email.lower(), *(a.lower() for a in self.aliases)} or (
                "\\" not in name and name == self.account.lower()
            )
        return domain.lower() == self.domain.lower() and name == self.account.lower()


@dataclass
class EwsItem:
    """A message or calendar item of one mailbox folder."""

    id: str
    owner: str
    folder: str
    kind: str  # "message" or "calendar"
    changekey: str = ""
    subject: str = ""
    body: str = ""
    sensitivity: str = "Normal"
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    # messages
    message_id: str = ""
    sender: tuple[str, str] | None = None
    to: list[tuple[str, str]] = field(default_factory=list)
    cc: list[tuple[str, str]] = field(default_factory=list)
    sent: datetime | None = None
    received: datetime | None = None
    is_draft: bool = False
    # calendar items
    uid: str = ""
    start: datetime | None = None
    end: datetime | None = None
    is_all_day: bool = False
    location: str = ""
    organizer: tuple[str, str] | None = None
    required: list[tuple[str, str]] = field(default_factory=list)
    optional: list[tuple[str, str]] = field(default_factory=list)
    is_cancelled: bool = False
    item_type: str = "Single"  # or RecurringMaster
    recurrence_end: date | None = None

    def __post_init__(self) -> None:
        self.changekey = self.changekey or _new_id("CQAAAB")


@dataclass
class Failure:
    """One injected failure."""

    kind: str
    retry_after: float = 1.0


@dataclass
class FakeEwsState:
    """Users, mailboxes, the change log and switches of the fake Exchange server."""

    base_url: str = ""
    auth_methods: tuple[str, ...] = ("NTLM", "Basic")
    version: tuple[int, int, int, int] = (15, 1, 2507, 6)
    users: dict[str, EwsUser] = field(default_factory=dict)
    items: dict[str, EwsItem] = field(default_factory=dict)
    # (seq, owner, folder, item id, "create" | "update" | "delete")
    log: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    epoch: int = 0
    failures: list[Failure] = field(default_factory=list)
    # Operations served (SOAP operation or "Autodiscover"), for exact call assertions.
    operations: list[str] = field(default_factory=list)
    # Properties requested per operation (FieldURI lists), to check what the client asks for.
    requested_fields: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    # Autodiscover behaviour: the EWS URL it hands out, an HTTP redirect, an address redirect.
    ews_url: str = ""
    autodiscover_http_redirect: str = ""
    autodiscover_redirect_addr: dict[str, str] = field(default_factory=dict)
    autodiscover_emails: list[str] = field(default_factory=list)
    # Host header (host:port) -> URL answered as Action redirectUrl for requests to that host.
    autodiscover_redirect_url: dict[str, str] = field(default_factory=dict)
    # Whether anonymous Autodiscover v2 (JSON) is served (sandbox/autodiscover_v2.py); older servers 404.
    autodiscover_v2: bool = False
    # Raw bytes served as the metadata document instead of the real one.
    metadata_override: bytes | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    _seq: Iterable[int] = field(default_factory=lambda: itertools.count(1))
    _secret: bytes = field(default_factory=lambda: os.urandom(16))
    _ntlm_pending: dict[int, tuple[bytes, bytes, bytes]] = field(default_factory=dict)
    _ntlm_authed: dict[int, str] = field(default_factory=dict)
    _signing: tuple[Any, bytes] | None = None

    # ---- Exchange identity tokens (getUserIdentityTokenAsync) ---------------------------------------
    def signing_key(self) -> tuple[Any, bytes]:
        """The server's token-signing key and its self-signed certificate (DER), made on first use."""
        with self.lock:
            if self._signing is None:
                self._signing = new_signing_key("Exchange Server Auth Certificate")
            return self._signing

    @property
    def amurl(self) -> str:
        """The authentication metadata URL this server names in its tokens."""
        return f"{self.base_url}{METADATA_PATH}"

    def metadata_document(self) -> dict[str, Any]:
        """The authentication metadata document (as Exchange serves it at ``amurl``)."""
        _, der = self.signing_key()
        return {
            "id": "_70b34511-d105-4e2b-9675-39f53305bb01", "version": "1.0", "name": "Exchange", "realm": "*",
            "serviceName": EXCHANGE_PRINCIPAL, "issuer": f"{EXCHANGE_PRINCIPAL}@*",
            "allowedAudiences": [f"{EXCHANGE_PRINCIPAL}@*"],
            "keys": [{"usage": "signing", "keyinfo": {"x5t": x5t_of(der)},
                      "keyvalue": {"type": "x509Certificate", "value": base64.b64encode(der).decode()}}],
            "endpoints": [{"location": f"{self.base_url}/autodiscover/metadata/json/1", "protocol": "OAuth2",
                           "usage": "metadata"}],
        }

    def identity_token(self, aud: str, msexchuid: str = "53e925fa-76ba-45e1-be0f-4ef08b59d389",
                       amurl: str | None = None, version: str = "ExIdTok.V1", lifetime: int = 8 * 3600,
                       nbf_offset: int = -5, signer: tuple[Any, bytes] | None = None,
                       headers: dict[str, Any] | None = None, **claims: Any) -> str:
        """A token as ``getUserIdentityTokenAsync`` returns it (claims can be overridden for bad cases)."""
        key, der = signer or self.signing_key()
        now = int(time.time())
        payload: dict[str, Any] = {
            "aud": aud, "iss": f"{EXCHANGE_PRINCIPAL}@exch01.acme.example",
            "nbf": str(now + nbf_offset), "exp": str(now + nbf_offset + lifetime),
            "appctxsender": f"{EXCHANGE_PRINCIPAL}@exch01.acme.example", "isbrowserhostedapp": "true",
            "appctx": json.dumps({"msexchuid": msexchuid, "version": version, "amurl": amurl or self.amurl}),
        }
        payload.update(claims)
        return jwt.encode(payload, key, algorithm="RS256", headers={"x5t": x5t_of(der), **(headers or {})})

    # ---- seeding and changing the mailbox ---------------------------------------------------------
    def add_user(self, email: str, password: str, account: str = "", domain: str = "ACME",
                 display_name: str = "", aliases: Iterable[str] = ()) -> EwsUser:
        """A directory user with a mailbox."""
        user = EwsUser(email=email.lower(), password=password, account=account or email.split("@")[0],
                       domain=domain, display_name=display_name or email.split("@")[0].title(),
                       aliases=[a.lower() for a in aliases])
        with self.lock:
            self.users[user.email] = user
        return user

    def _log(self, item: EwsItem, change: str) -> None:
        self.log.append((next(self._seq), item.owner, item.folder, item.id, change))  # type: ignore[call-overload]

    def add_item(self, item: EwsItem) -> str:
        """Store a new item (appears as a Create in the next sync)."""
        with self.lock:
            self.items[item.id] = item
            self._log(item, "create")
        return item.id

    def add_email(self, owner: str, folder: str, *, subject: str, sender: str, to: list[str],
                  cc: list[str] | None = None, body: str = "", message_id: str | None = None,
                  when: datetime | None = None, sensitivity: str = "Normal", is_draft: bool = False) -> str:
        """A message in ``inbox`` or ``sentitems``."""
        stamp = when or datetime.now(UTC)
        item = EwsItem(
            id=_new_id(), owner=owner.lower(), folder=folder, kind="message", subject=subject, body=body,
            sensitivity=sensitivity, message_id=message_id if message_id is not None else
            f"<{secrets.token_hex(8)}@{sender.split('@')[-1]}>",
            sender=(sender, sender.split("@")[0].title()), to=[(a, "") for a in to], cc=[(a, "") for a in cc or []],
            sent=stamp - timedelta(seconds=5), received=stamp, is_draft=is_draft,
        )
        return self.add_item(item)

    def add_event(self, owner: str, *, subject: str, start: datetime, end: datetime, organizer: str,
                  attendees: list[str], optional: list[str] | None = None, uid: str | None = None,
                  body: str = "", sensitivity: str = "Normal", recurring: bool = False,
                  recurrence_end: date | None = None, location: str = "", is_all_day: bool = False) -> str:
        """A calendar item (a single meeting, or a recurring series master)."""
        item = EwsItem(
            id=_new_id(), owner=owner.lower(), folder="calendar", kind="calendar", subject=subject, body=body,
            sensitivity=sensitivity, uid=uid or secrets.token_hex(16).upper(), start=start, end=end,
            organizer=(organizer, ""), required=[(a, "") for a in attendees],
            optional=[(a, "") for a in optional or []], item_type="RecurringMaster" if recurring else "Single",
            recurrence_end=recurrence_end, location=location, is_all_day=is_all_day,
            sent=start - timedelta(days=1), received=start - timedelta(days=1),
        )
        return self.add_item(item)

    def update_item(self, item_id: str, **changes: Any) -> None:
        """Change fields of an item (appears as an Update); attendee lists as plain addresses."""
        with self.lock:
            item = self.items[item_id]
            for name, value in changes.items():
                if name in ("to", "cc", "required", "optional", "attendees"):
                    value = [(a, "") for a in value]
                    name = "required" if name == "attendees" else name
                if name == "organizer":
                    value = (value, "")
                setattr(item, name, value)
            item.changekey = _new_id("CQAAAB")
            self._log(item, "update")

    def delete_item(self, item_id: str) -> None:
        """Remove an item (appears as a Delete)."""
        with self.lock:
            item = self.items.pop(item_id)
            self._log(item, "delete")

    def revoke(self, email: str, new_password: str | None = None) -> None:
        """Change a user's password; connections it had authenticated are dropped from the NTLM table."""
        with self.lock:
            user = self.users[email.lower()]
            user.password = new_password or secrets.token_urlsafe(12)
            for conn, who in list(self._ntlm_authed.items()):
                if who == user.email:
                    del self._ntlm_authed[conn]

    def expire_sync_states(self) -> None:
        """Every sync state handed out so far becomes invalid."""
        with self.lock:
            self.epoch += 1

    def inject_failure(self, kind: str, times: int = 1, retry_after: float = 1.0) -> None:
        """Fail the next ``times`` requests (see the module docstring for kinds)."""
        with self.lock:
            self.failures.extend(Failure(kind, retry_after) for _ in range(times))

    # ---- sync states ---------------------------------------------------------------------------
    def _state(self, owner: str, folder: str, seq: int) -> str:
        raw = f"{owner}|{folder}|{seq}|{self.epoch}".encode()
        sig = hmac.new(self._secret, raw, hashlib.sha256).digest()[:12]
        return base64.b64encode(raw + b"|" + sig).decode()

    def _read_state(self, token: str, owner: str, folder: str) -> int | None:
        try:
            raw = base64.b64decode(token.encode(), validate=True)
            body, sig = raw[:-13], raw[-12:]  # fixed-size signature (its bytes may include "|")
            expected = hmac.new(self._secret, body, hashlib.sha256).digest()[:12]
            if len(raw) < 14 or not hmac.compare_digest(sig, expected):
                return None
            s_owner, s_folder, s_seq, s_epoch = body.decode().split("|")
        except (ValueError, UnicodeDecodeError):
            return None
        if s_owner != owner or s_folder != folder or int(s_epoch) != self.epoch:
            return None
        return int(s_seq)

    def changes_since(self, owner: str, folder: str, seq: int, limit: int) -> tuple[list[tuple[str, str]], int, bool]:
        """Net changes after ``seq``: ([(change, item id)], new seq, includes last)."""
        entries = [e for e in self.log if e[0] > seq and e[1] == owner and e[2] == folder]
        first: dict[str, str] = {}
        last: dict[str, str] = {}
        order: list[str] = []
        cut = seq
        for entry_seq, _, _, item_id, change in entries:
            if item_id not in first:
                if len(order) >= limit:
                    break
                order.append(item_id)
                first[item_id] = change
            last[item_id] = change
            cut = entry_seq
        result: list[tuple[str, str]] = []
        for item_id in order:
            existed = first[item_id] != "create"
            if last[item_id] == "delete":
                if existed:
                    result.append(("Delete", item_id))
            elif existed:
                result.append(("Update", item_id))
            else:
                result.append(("Create", item_id))
        includes_last = not any(e[0] > cut for e in entries)
        return result, cut, includes_last

    # ---- authentication --------------------------------------------------------------------------
    def find_user(self, domain: str, name: str) -> EwsUser | None:
        """The user a login names."""
        if "\\" in name and not domain:
            domain, name = name.split("\\", 1)
        for user in self.users.values():
            if user.matches_login(domain, name):
                return user
        return None


def _el(tag: str, parent: Any = None, text: str | None = None, **attrs: str) -> Any:
    node = etree.Element(tag, attrs) if parent is None else etree.SubElement(parent, tag, attrs)
    if text is not None:
        node.text = text
    return node


def _mailbox(parent: Any, tag: str, addr: tuple[str, str] | None) -> None:
    if addr is None:
        return
    holder = _el(T + tag, parent)
    _add_mailbox(holder, addr)


def _add_mailbox(parent: Any, addr: tuple[str, str], mailbox_type: str = "OneOff") -> None:
    box = _el(T + "Mailbox", parent)
    if addr[1]:
        _el(T + "Name", box, addr[1])
    _el(T + "EmailAddress", box, addr[0])
    _el(T + "RoutingType", box, "SMTP")
    _el(T + "MailboxType", box, mailbox_type)


def _render_field(node: Any, item: EwsItem, uri: str) -> None:
    """Append the elements of one requested property (unknown ones are left out)."""
    if uri == "item:ItemClass":
        _el(T + "ItemClass", node, "IPM.Note" if item.kind == "message" else "IPM.Appointment")
    elif uri == "item:Subject":
        _el(T + "Subject", node, item.subject)
    elif uri == "item:Sensitivity":
        _el(T + "Sensitivity", node, item.sensitivity)
    elif uri in ("item:Body", "item:TextBody"):
        _el(T + uri.split(":")[1], node, item.body, BodyType="Text")
    elif uri == "item:DateTimeReceived" and item.received:
        _el(T + "DateTimeReceived", node, _iso(item.received))
    elif uri == "item:DateTimeSent" and item.sent:
        _el(T + "DateTimeSent", node, _iso(item.sent))
    elif uri == "item:DateTimeCreated":
        _el(T + "DateTimeCreated", node, _iso(item.created))
    elif uri == "item:IsDraft":
        _el(T + "IsDraft", node, "true" if item.is_draft else "false")
    elif item.kind == "message":
        if uri == "message:From":
            _mailbox(node, "From", item.sender)
        elif uri == "message:Sender":
            _mailbox(node, "Sender", item.sender)
        elif uri in ("message:ToRecipients", "message:CcRecipients") and (item.to if "To" in uri else item.cc):
            holder = _el(T + uri.split(":")[1], node)
            for addr in item.to if "To" in uri else item.cc:
                _add_mailbox(holder, addr)
        elif uri == "message:InternetMessageId" and item.message_id:
            _el(T + "InternetMessageId", node, item.message_id)
    else:
        _render_calendar_field(node, item, uri)


def _render_calendar_field(node: Any, item: EwsItem, uri: str) -> None:
    if uri == "calendar:UID":
        _el(T + "UID", node, item.uid)
    elif uri == "calendar:Start" and item.start:
        _el(T + "Start", node, _iso(item.start))
    elif uri == "calendar:End" and item.end:
        _el(T + "End", node, _iso(item.end))
    elif uri == "calendar:IsAllDayEvent":
        _el(T + "IsAllDayEvent", node, "true" if item.is_all_day else "false")
    elif uri == "calendar:Location" and item.location:
        _el(T + "Location", node, item.location)
    elif uri == "calendar:IsCancelled":
        _el(T + "IsCancelled", node, "true" if item.is_cancelled else "false")
    elif uri == "calendar:IsRecurring":
        _el(T + "IsRecurring", node, "true" if item.item_type != "Single" else "false")
    elif uri == "calendar:CalendarItemType":
        _el(T + "CalendarItemType", node, item.item_type)
    elif uri == "calendar:Organizer":
        _mailbox(node, "Organizer", item.organizer)
    elif uri in ("calendar:RequiredAttendees", "calendar:OptionalAttendees"):
        people = item.required if "Required" in uri else item.optional
        if people:
            holder = _el(T + uri.split(":")[1], node)
            for addr in people:
                attendee = _el(T + "Attendee", holder)
                _add_mailbox(attendee, addr, "Mailbox")
                _el(T + "ResponseType", attendee, "Unknown")
    elif uri == "calendar:Recurrence" and item.item_type == "RecurringMaster" and item.start:
        rec = _el(T + "Recurrence", node)
        daily = _el(T + "DailyRecurrence", rec)
        _el(T + "Interval", daily, "1")
        if item.recurrence_end:
            rng = _el(T + "EndDateRecurrence", rec)
            _el(T + "StartDate", rng, item.start.date().isoformat())
            _el(T + "EndDate", rng, item.recurrence_end.isoformat())
        else:
            rng = _el(T + "NoEndRecurrence", rec)
            _el(T + "StartDate", rng, item.start.date().isoformat())


def _render_item(parent: Any, item: EwsItem, fields: Iterable[str]) -> Any:
    node = _el(T + ("Message" if item.kind == "message" else "CalendarItem"), parent)
    _el(T + "ItemId", node, Id=item.id, ChangeKey=item.changekey)
    for uri in fields:
        _render_field(node, item, uri)
    return node


def _requested_fields(shape: Any) -> tuple[str, ...]:
    if shape is None:
        return ()
    base = shape.findtext(T + "BaseShape") or "IdOnly"
    uris = [f.get("FieldURI") for f in shape.iter(T + "FieldURI")]
    if base != "IdOnly":
        uris += ["item:Subject", "item:DateTimeReceived", "item:DateTimeSent", "item:Sensitivity",
                 "message:From", "message:ToRecipients", "calendar:Start", "calendar:End", "calendar:UID"]
    return tuple(u for u in uris if u)


class SoapError(Exception):
    """An error answered as a response message code."""

    def __init__(self, code: str, text: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.text = text or code


class FakeEws:
    """The WSGI application of the fake server."""

    def __init__(self, state: FakeEwsState) -> None:
        self.state = state

    # ---- WSGI plumbing ---------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, headers, body = self.handle(environ)
        headers = [*headers, ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]

    def handle(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        """Route one request."""
        path = environ.get("PATH_INFO", "")
        body = environ["wsgi.input"].read()
        failure = self._take_failure(kinds={"503", "unavailable", "500", "not_ews", "delay", "disconnect", "drip"})
        if failure is not None:
            early = self._fail(failure, environ)
            if early is not None:
                return early
        if environ["REQUEST_METHOD"] == "GET" and path.lower() == METADATA_PATH:
            with self.state.lock:
                self.state.operations.append("Metadata")
                override = self.state.metadata_override
            if override is not None:
                return "200 OK", [("Content-Type", "application/json")], override
            return "200 OK", [("Content-Type", "application/json")], json.dumps(
                self.state.metadata_document()).encode()
        if autodiscover_v2.is_v2_request(environ["REQUEST_METHOD"], path):
            with self.state.lock:
                if self.state.autodiscover_v2:  # an older server does not know the path
                    self.state.operations.append("AutodiscoverV2")
            return autodiscover_v2.answer(self.state.autodiscover_v2, path, environ.get("QUERY_STRING", ""),
                                          self.state.ews_url or f"{self.state.base_url}{EWS_PATH}")
        if environ["REQUEST_METHOD"] != "POST" or path.lower() not in (EWS_PATH.lower(), AUTODISCOVER_PATH):
            return "404 Not Found", [("Content-Type", "text/html")], b"<html><body>Not found</body></html>"
        user, denied = self._authenticate(environ)
        if user is None:
            assert denied is not None
            return denied
        if path.lower() == AUTODISCOVER_PATH:
            return self._autodiscover(user, body, environ.get("HTTP_HOST", ""))
        throttle = self._take_failure(kinds={"throttle"})
        if throttle is not None:
            return self._server_busy(throttle.retry_after)
        return self._soap(user, body)

    def _take_failure(self, kinds: set[str]) -> Failure | None:
        with self.state.lock:
            if self.state.failures and self.state.failures[0].kind in kinds:
                return self.state.failures.pop(0)
        return None

    def _fail(self, failure: Failure, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes] | None:
        html = [("Content-Type", "text/html")]
        if failure.kind == "503":
            return ("503 Service Unavailable", [*html, ("Retry-After", str(int(failure.retry_after)))],
                    b"<html><body>Service Unavailable</body></html>")
        if failure.kind == "unavailable":
            return "502 Bad Gateway", html, b"<html><body>502 Bad Gateway</body></html>"
        if failure.kind == "500":
            return "500 Internal Server Error", html, b"<html><body>Runtime Error</body></html>"
        if failure.kind == "not_ews":
            return "200 OK", html, b"<html><head><title>Outlook</title></head><body>Sign in</body></html>"
        if failure.kind == "delay":
            time.sleep(failure.retry_after)
            return None
        if failure.kind == "drip":
            environ["fake.drip"] = failure.retry_after  # the connection handler drips the answer
            return None
        if failure.kind == "disconnect":
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            return "500 Internal Server Error", html, b""
        return None

    def _unauthorized(self, challenge: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        headers = [("Content-Type", "text/html")]
        if challenge is not None:
            headers.append(("WWW-Authenticate", challenge))
        else:
            for method in self.state.auth_methods:
                value = "NTLM" if method == "NTLM" else 'Basic realm="exch01.acme.example"'
                headers.append(("WWW-Authenticate", value))
        return "401 Unauthorized", headers, b"<html><body>401 - Unauthorized</body></html>"

    def _authenticate(self, environ: dict[str, Any]) -> tuple[EwsUser | None, Any]:
        state = self.state
        conn = int(environ.get("fake.conn", 0))
        with state.lock:
            authed = state._ntlm_authed.get(conn)
            if authed is not None and authed in state.users:
                return state.users[authed], None
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "basic" and "Basic" in state.auth_methods:
            try:
                login, _, password = base64.b64decode(token).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return None, self._unauthorized()
            user = state.find_user("", login)
            if user is not None and hmac.compare_digest(user.password.encode(), password.encode()):
                return user, None
            return None, self._unauthorized()
        if scheme.lower() in ("ntlm", "negotiate") and "NTLM" in state.auth_methods:
            try:
                raw = base64.b64decode(token)
            except ValueError:
                return None, self._unauthorized()
            message_type = int.from_bytes(raw[8:12], "little") if len(raw) >= 12 else 0
            if message_type == 1:
                return None, self._unauthorized(f"{scheme} {self._ntlm_challenge(conn, raw)}")
            if message_type == 3:
                user = self._ntlm_verify(conn, raw)
                if user is not None:
                    return user, None
        return None, self._unauthorized()

    def _ntlm_challenge(self, conn: int, raw: bytes) -> str:
        negotiate = Negotiate.unpack(raw)
        flags = (negotiate.flags | NegotiateFlags.request_target | NegotiateFlags.ntlm | NegotiateFlags.always_sign
                 | NegotiateFlags.target_info | NegotiateFlags.target_type_server)
        if flags & NegotiateFlags.unicode:
            flags &= ~NegotiateFlags.oem
        if flags & NegotiateFlags.extended_session_security:
            flags &= ~NegotiateFlags.lm_key
        info = TargetInfo()
        info[AvId.nb_computer_name] = "EXCH01"
        info[AvId.nb_domain_name] = "ACME"
        info[AvId.dns_computer_name] = "exch01.acme.example"
        info[AvId.dns_domain_name] = "acme.example"
        info[AvId.timestamp] = FileTime.now()
        server_challenge = os.urandom(8)
        kwargs: dict[str, Any] = {}
        if flags & NegotiateFlags.version:
            kwargs["version"] = NtlmVersion.get_current()
        challenge = Challenge(flags, server_challenge, target_name="ACME", target_info=info, **kwargs)
        packed = challenge.pack()
        with self.state.lock:
            self.state._ntlm_pending[conn] = (raw, packed, server_challenge)
        return base64.b64encode(packed).decode()

    def _ntlm_verify(self, conn: int, raw: bytes) -> EwsUser | None:
        with self.state.lock:
            pending = self.state._ntlm_pending.pop(conn, None)
        if pending is None:
            return None  # a type 3 on a connection that never got our challenge
        _, _, server_challenge = pending
        try:
            auth = Authenticate.unpack(raw)
        except Exception:
            return None
        user = self.state.find_user(auth.domain_name or "", auth.user_name or "")
        response = auth.nt_challenge_response or b""
        if user is None or len(response) <= 24:
            return None  # unknown user, or NTLMv1 (refused)
        key = ntowfv2(auth.user_name or "", ntowfv1(user.password), auth.domain_name)
        client = NTClientChallengeV2.unpack(response[16:])
        expected, _, _ = compute_response_v2(key, server_challenge, client.challenge_from_client,
                                             client.time_stamp, client.av_pairs)
        if not hmac.compare_digest(expected, response):
            return None
        with self.state.lock:
            self.state._ntlm_authed[conn] = user.email
        return user

    # ---- SOAP ----------------------------------------------------------------------------------
    def _envelope(self, content: Any) -> bytes:
        env = _el(S + "Envelope", None)
        header = _el(S + "Header", env)
        major, minor, build, rev = self.state.version
        _el(T + "ServerVersionInfo", header, MajorVersion=str(major), MinorVersion=str(minor),
            MajorBuildNumber=str(build), MinorBuildNumber=str(rev), Version="V2017_07_11")
        body = _el(S + "Body", env)
        body.append(content)
        return bytes(etree.tostring(env, xml_declaration=True, encoding="utf-8"))

    def _xml(self, status: str, payload: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
        return status, [("Content-Type", "text/xml; charset=utf-8")], payload

    def _server_busy(self, retry_after: float) -> tuple[str, list[tuple[str, str]], bytes]:
        env = _el(S + "Envelope", None)
        body = _el(S + "Body", env)
        fault = _el(S + "Fault", body)
        _el("faultcode", fault, "a:ErrorServerBusy")
        _el("faultstring", fault, "The server cannot service this request right now. Try again later.")
        detail = _el("detail", fault)
        _el(E + "ResponseCode", detail, "ErrorServerBusy")
        _el(E + "Message", detail, "The server cannot service this request right now. Try again later.")
        xml = _el(T + "MessageXml", detail)
        _el(T + "Value", xml, str(int(retry_after * 1000)), Name="BackOffMilliseconds")
        with self.state.lock:
            self.state.operations.append("ErrorServerBusy")
        return self._xml("500 Internal Server Error", bytes(etree.tostring(env, xml_declaration=True,
                                                                             encoding="utf-8")))

    def _soap(self, user: EwsUser, raw: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
        try:
            root = etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False, no_network=True))
            request = root.find(S + "Body")[0]
        except (etree.XMLSyntaxError, TypeError, IndexError):
            return self._xml("500 Internal Server Error", b"<html>Bad request</html>")
        op = etree.QName(request).localname
        with self.state.lock:
            self.state.operations.append(op)
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            return self._xml("500 Internal Server Error",
                             self._envelope(self._fault_element("ErrorInvalidRequest", f"{op} is not supported")))
        response = _el(M + f"{op}Response", None)
        messages = _el(M + "ResponseMessages", response)
        with self.state.lock:
            handler(user, request, messages)
        return self._xml("200 OK", self._envelope(response))

    def _fault_element(self, code: str, text: str) -> Any:
        fault = _el(S + "Fault", None)
        _el("faultcode", fault, f"a:{code}")
        _el("faultstring", fault, text)
        detail = _el("detail", fault)
        _el(E + "ResponseCode", detail, code)
        _el(E + "Message", detail, text)
        return fault

    @staticmethod
    def _message(parent: Any, op: str, code: str = "NoError", text: str = "") -> Any:
        ok = code == "NoError"
        msg = _el(M + f"{op}ResponseMessage", parent, ResponseClass="Success" if ok else "Error")
        if not ok:
            _el(M + "MessageText", msg, text or code)
        _el(M + "ResponseCode", msg, code)
        if not ok:
            _el(M + "DescriptiveLinkKey", msg, "0")
        return msg

    def _owner(self, user: EwsUser, folder_id: Any) -> tuple[str, str]:
        """(owner, distinguished folder) for a DistinguishedFolderId (Mailbox element optional)."""
        if folder_id is None or folder_id.tag != T + "DistinguishedFolderId":
            raise SoapError("ErrorFolderNotFound", "The specified folder could not be found in the store.")
        name = folder_id.get("Id", "")
        if name not in FOLDER_INFO:
            raise SoapError("ErrorFolderNotFound", "The specified folder could not be found in the store.")
        owner = (folder_id.findtext(f"{T}Mailbox/{T}EmailAddress") or user.email).lower()
        if owner not in self.state.users:
            raise SoapError("ErrorNonExistentMailbox", f"No mailbox with such guid or SMTP address {owner}.")
        if owner != user.email:
            raise SoapError("ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return owner, name

    def _op_ConvertId(self, user: EwsUser, request: Any, messages: Any) -> None:
        for _ in request.iter(T + "AlternateId"):
            self._message(messages, "ConvertId", "ErrorInvalidIdMalformed", "Id is malformed.")

    def _op_ResolveNames(self, user: EwsUser, request: Any, messages: Any) -> None:
        full = request.get("ReturnFullContactData", "false").lower() == "true"
        for entry in request.iter(M + "UnresolvedEntry"):
            needle = (entry.text or "").strip().lower()
            if needle.startswith("smtp:"):
                needle = needle[5:]
            found = [u for u in self.state.users.values() if needle and not u.hidden and (
                needle in {u.email, *u.aliases, u.account.lower()}
                or u.display_name.lower().startswith(needle)
                or f"{u.domain}\\{u.account}".lower() == needle)]
            if not found:
                msg = self._message(messages, "ResolveNames", "ErrorNameResolutionNoResults",
                                    "No results were found.")
                continue
            msg = _el(M + "ResolveNamesResponseMessage", messages,
                      ResponseClass="Success" if len(found) == 1 else "Warning")
            if len(found) > 1:
                _el(M + "MessageText", msg, "Multiple results were found.")
            _el(M + "ResponseCode", msg, "NoError" if len(found) == 1 else "ErrorNameResolutionMultipleResults")
            if len(found) > 1:
                _el(M + "DescriptiveLinkKey", msg, "0")
            rset = _el(M + "ResolutionSet", msg, TotalItemsInView=str(len(found)), IncludesLastItemInRange="true")
            for u in found:
                res = _el(T + "Resolution", rset)
                _add_mailbox(res, (u.email, u.display_name), "Mailbox")
                if full:
                    contact = _el(T + "Contact", res)
                    _el(T + "DisplayName", contact, u.display_name)
                    addresses = _el(T + "EmailAddresses", contact)
                    entries = [f"SMTP:{u.email}", *(f"smtp:{a}" for a in u.aliases)]
                    for n, text in enumerate(entries[:3], start=1):
                        _el(T + "Entry", addresses, text, Key=f"EmailAddress{n}")
                    _el(T + "ContactSource", contact, "ActiveDirectory")

    def _op_GetFolder(self, user: EwsUser, request: Any, messages: Any) -> None:
        ids = request.find(M + "FolderIds")
        for folder_id in ids if ids is not None else []:
            try:
                owner, name = self._owner(user, folder_id)
            except SoapError as exc:
                self._message(messages, "GetFolder", exc.code, exc.text)
                continue
            msg = self._message(messages, "GetFolder")
            folders = _el(M + "Folders", msg)
            tag, folder_class, display = FOLDER_INFO[name]
            node = _el(T + tag, folders)
            fid = base64.b64encode(f"{owner}/{name}".encode()).decode()
            _el(T + "FolderId", node, Id=fid, ChangeKey="AQAAAA==")
            if folder_class:
                _el(T + "FolderClass", node, folder_class)
            _el(T + "DisplayName", node, display)
            count = sum(1 for i in self.state.items.values() if i.owner == owner and i.folder == name)
            _el(T + "TotalCount", node, str(count))
            _el(T + "ChildFolderCount", node, "0")
            _el(T + "UnreadCount", node, "0")

    def _check_no_body(self, fields: tuple[str, ...]) -> None:
        if "item:Body" in fields or "item:TextBody" in fields:
            raise SoapError("ErrorInvalidPropertyRequest", "The property 'Body' can't be used in this request.")

    def _op_SyncFolderItems(self, user: EwsUser, request: Any, messages: Any) -> None:
        op = "SyncFolderItems"
        fields = _requested_fields(request.find(M + "ItemShape"))
        self.state.requested_fields.append((op, fields))
        try:
            self._check_no_body(fields)
            holder = request.find(M + "SyncFolderId")
            owner, folder = self._owner(user, holder[0] if holder is not None and len(holder) else None)
            if folder not in FOLDERS:
                raise SoapError("ErrorSyncFolderNotFound", "The folder cannot be synchronized.")
            token = (request.findtext(M + "SyncState") or "").strip()
            seq = 0
            if token:
                found = self.state._read_state(token, owner, folder)
                if found is None:
                    raise SoapError("ErrorInvalidSyncStateData",
                                    "Synchronization state data is corrupt or otherwise invalid.")
                seq = found
            limit = min(int(request.findtext(M + "MaxChangesReturned") or "100"), MAX_SYNC_CHANGES)
        except SoapError as exc:
            msg = self._message(messages, op, exc.code, exc.text)
            _el(M + "SyncState", msg)
            _el(M + "IncludesLastItemInRange", msg, "true")
            return
        changes, cut, includes_last = self.state.changes_since(owner, folder, seq, max(limit, 1))
        msg = self._message(messages, op)
        _el(M + "SyncState", msg, self.state._state(owner, folder, cut))
        _el(M + "IncludesLastItemInRange", msg, "true" if includes_last else "false")
        holder = _el(M + "Changes", msg)
        for change, item_id in changes:
            node = _el(T + change, holder)
            if change == "Delete":
                _el(T + "ItemId", node, Id=item_id)
            else:
                _render_item(node, self.state.items[item_id], fields)

    def _op_GetItem(self, user: EwsUser, request: Any, messages: Any) -> None:
        fields = _requested_fields(request.find(M + "ItemShape"))
        self.state.requested_fields.append(("GetItem", fields))
        ids = request.find(M + "ItemIds")
        for item_id in ids if ids is not None else []:
            item = self.state.items.get(item_id.get("Id", ""))
            if item is None or item.owner != user.email:
                self._message(messages, "GetItem", "ErrorItemNotFound",
                              "The specified object was not found in the store.")
                continue
            msg = self._message(messages, "GetItem")
            _render_item(_el(M + "Items", msg), item, fields)

    def _op_FindItem(self, user: EwsUser, request: Any, messages: Any) -> None:
        fields = _requested_fields(request.find(M + "ItemShape"))
        self.state.requested_fields.append(("FindItem", fields))
        holder = request.find(M + "ParentFolderIds")
        for folder_id in holder if holder is not None else []:
            try:
                self._check_no_body(fields)
                owner, folder = self._owner(user, folder_id)
            except SoapError as exc:
                self._message(messages, "FindItem", exc.code, exc.text)
                continue
            items = [i for i in self.state.items.values() if i.owner == owner and i.folder == folder]
            restriction = request.find(M + "Restriction")
            if restriction is not None and len(restriction):
                items = [i for i in items if _matches(restriction[0], i)]
            items.sort(key=lambda i: i.received or i.created, reverse=True)
            view = request.find(M + "IndexedPageItemView")
            offset = int(view.get("Offset", "0")) if view is not None else 0
            size = int(view.get("MaxEntriesReturned", "1000")) if view is not None else 1000
            page = items[offset:offset + size]
            msg = self._message(messages, "FindItem")
            last = offset + len(page) >= len(items)
            root = _el(M + "RootFolder", msg, TotalItemsInView=str(len(items)),
                       IncludesLastItemInRange="true" if last else "false",
                       **({} if last else {"IndexedPagingOffset": str(offset + len(page))}))
            container = _el(T + "Items", root)
            for item in page:
                _render_item(container, item, fields)

    # ---- Autodiscover --------------------------------------------------------------------------
    def _autodiscover(self, user: EwsUser, raw: bytes, host: str) -> tuple[str, list[tuple[str, str]], bytes]:
        with self.state.lock:
            self.state.operations.append("Autodiscover")
            if self.state.autodiscover_http_redirect:
                return "302 Found", [("Location", self.state.autodiscover_http_redirect)], b""
            redirect_url = self.state.autodiscover_redirect_url.get(host.lower())
        try:
            root = etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False, no_network=True))
            email = (root.findtext(f"{{{NS_AD_REQ}}}Request/{{{NS_AD_REQ}}}EMailAddress") or "").strip().lower()
        except etree.XMLSyntaxError:
            email = ""
        with self.state.lock:
            self.state.autodiscover_emails.append(email)
            redirect = self.state.autodiscover_redirect_addr.get(email)
            known = email in self.state.users or any(email in u.aliases for u in self.state.users.values())
        doc = _el(f"{{{NS_AD}}}Autodiscover", None)
        resp = _el(f"{{{NS_AD_OUT}}}Response", doc)
        if redirect_url:
            account = _el(f"{{{NS_AD_OUT}}}Account", resp)
            _el(f"{{{NS_AD_OUT}}}Action", account, "redirectUrl")
            _el(f"{{{NS_AD_OUT}}}RedirectUrl", account, redirect_url)
        elif redirect:
            account = _el(f"{{{NS_AD_OUT}}}Account", resp)
            _el(f"{{{NS_AD_OUT}}}Action", account, "redirectAddr")
            _el(f"{{{NS_AD_OUT}}}RedirectAddr", account, redirect)
        elif not known:
            err = _el(f"{{{NS_AD_OUT}}}Error", resp, Time="12:00:00.000", Id="1")
            _el(f"{{{NS_AD_OUT}}}ErrorCode", err, "500")
            _el(f"{{{NS_AD_OUT}}}Message", err, "The email address can't be found.")
        else:
            usr = _el(f"{{{NS_AD_OUT}}}User", resp)
            _el(f"{{{NS_AD_OUT}}}DisplayName", usr, user.display_name)
            _el(f"{{{NS_AD_OUT}}}AutoDiscoverSMTPAddress", usr, email)
            account = _el(f"{{{NS_AD_OUT}}}Account", resp)
            _el(f"{{{NS_AD_OUT}}}AccountType", account, "email")
            _el(f"{{{NS_AD_OUT}}}Action", account, "settings")
            for kind in ("EXCH", "EXPR"):
                proto = _el(f"{{{NS_AD_OUT}}}Protocol", account)
                _el(f"{{{NS_AD_OUT}}}Type", proto, kind)
                _el(f"{{{NS_AD_OUT}}}EwsUrl", proto, self.state.ews_url or f"{self.state.base_url}{EWS_PATH}")
        return "200 OK", [("Content-Type", "text/xml; charset=utf-8")], bytes(
            etree.tostring(doc, xml_declaration=True, encoding="utf-8"))


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "IsEqualTo": lambda a, b: a == b,
    "IsNotEqualTo": lambda a, b: a != b,
    "IsGreaterThan": lambda a, b: a > b,
    "IsGreaterThanOrEqualTo": lambda a, b: a >= b,
    "IsLessThan": lambda a, b: a < b,
    "IsLessThanOrEqualTo": lambda a, b: a <= b,
}
_ATTR = {"item:DateTimeReceived": "received", "item:DateTimeSent": "sent", "item:Subject": "subject",
         "calendar:Start": "start", "calendar:End": "end"}


def _matches(node: Any, item: EwsItem) -> bool:
    """Evaluate a (small) EWS restriction against an item."""
    name = etree.QName(node).localname
    if name == "And":
        return all(_matches(child, item) for child in node)
    if name == "Or":
        return any(_matches(child, item) for child in node)
    if name == "Not":
        return not _matches(node[0], item)
    if name in _COMPARE:
        uri = node.find(T + "FieldURI").get("FieldURI")
        constant = node.find(f"{T}FieldURIOrConstant/{T}Constant").get("Value")
        value = getattr(item, _ATTR.get(uri, ""), None)
        if value is None:
            return False
        other: Any = _parse_dt(constant) if isinstance(value, datetime) else constant
        return _COMPARE[name](value, other)
    raise SoapError("ErrorUnsupportedQueryFilter", f"Restriction {name} is not supported by the fake.")


class _KeepAliveHandler(BaseHTTPRequestHandler):
    """A small HTTP/1.1 WSGI handler that keeps connections open, as IIS does.

    Keep-alive matters: NTLM authenticates a *connection* (its three messages must share one), and
    exchangelib reads ``Connection: close`` on an error response as "server busy". Werkzeug's
    development handler cannot be used for this: it always closes, and after each response it
    reads and discards whatever the client sent within 10 ms, which on a kept-alive connection
    swallows the next request (an NTLM type 3 sent right after the challenge). So this handler
    reads exactly ``Content-Length`` bytes per request and nothing more.

    TLS is done here, in the connection's own thread, so one slow or refused handshake (a client
    rejecting an expired certificate) never stalls the accepting thread.
    """

    protocol_version = "HTTP/1.1"
    timeout = 30
    _ids = itertools.count(1)
    _broken = False
    server: _KeepAliveServer

    def setup(self) -> None:
        """Give the connection an id and do the TLS handshake."""
        self.conn_id = next(self._ids)
        try:
            self.request.settimeout(10)
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            self._broken = True  # the client refused us (e.g. our expired certificate)
            with suppress(OSError):
                self.request.close()
            return
        super().setup()

    def handle(self) -> None:
        """Serve requests until the client closes (nothing after a failed handshake)."""
        if self._broken:
            return
        with suppress(ConnectionError, TimeoutError, ssl.SSLError, OSError):
            super().handle()

    def finish(self) -> None:
        """Flush and close (nothing to flush after a failed handshake)."""
        if not self._broken:
            with suppress(OSError):
                super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorder keeps what tests need."""

    def _run(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command, "SCRIPT_NAME": "", "PATH_INFO": unquote(path),
            "QUERY_STRING": query, "SERVER_NAME": self.server.server_address[0],
            "SERVER_PORT": str(self.server.server_address[1]), "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0], "REMOTE_PORT": self.client_address[1],
            "CONTENT_LENGTH": str(length) if length else "",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "https", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(), "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False, "werkzeug.socket": self.connection, "fake.conn": self.conn_id,
        }
        if self.headers.get("Content-Type"):
            environ["CONTENT_TYPE"] = self.headers["Content-Type"]
        for key, value in self.headers.items():
            name = "HTTP_" + key.upper().replace("-", "_")
            if name in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                continue
            environ[name] = f"{environ[name]},{value}" if name in environ else value
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        payload = b"".join(self.server.app(environ, start_response))
        code, _, reason = captured["status"].partition(" ")
        self.send_response(int(code), reason)
        names = set()
        for key, value in captured["headers"]:
            self.send_header(key, value)
            names.add(key.lower())
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        drip = environ.get("fake.drip")
        if drip is not None and self.command != "HEAD":
            self.wfile.flush()
            self._drip(payload, float(drip))
            return
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _drip(self, payload: bytes, interval: float) -> None:
        """Send ``payload`` one byte per ``interval`` (never idle long enough for a read timeout)."""
        started = time.monotonic()
        self.close_connection = True  # whatever happens, this connection is done afterwards
        for n in range(len(payload)):
            if time.monotonic() - started > DRIP_LIMIT_SECONDS:
                return
            try:
                self.wfile.write(payload[n:n + 1])
                self.wfile.flush()
            except OSError:
                return  # the client cut the connection
            time.sleep(interval)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _run


class _KeepAliveServer(socketserver.ThreadingTCPServer):
    """A threaded TCP server handing each connection to :class:`_KeepAliveHandler`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: Any, tls: ssl.SSLContext) -> None:
        self.app = app
        self.tls = tls
        super().__init__(address, _KeepAliveHandler)

    @property
    def server_port(self) -> int:
        """The bound port."""
        return int(self.server_address[1])


class KeepAliveFakeServer(FakeServer):
    """A :class:`FakeServer` whose connections stay open between requests (TLS per connection thread)."""

    def __init__(self, app: Any, cert: CertPair, host: str = "127.0.0.1", port: int = 0) -> None:
        self.recorder = app if isinstance(app, Recorder) else Recorder(app)
        self._server = _KeepAliveServer((host, port), self.recorder, cert.server_context())  # type: ignore[assignment]
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-ews:{self.port}", daemon=True)


def start_fake_ews(cert: CertPair, state: FakeEwsState | None = None) -> tuple[FakeEwsState, KeepAliveFakeServer]:
    """Start a fake Exchange server; its state's ``base_url`` is set to the server's origin."""
    state = state or FakeEwsState()
    server = KeepAliveFakeServer(FakeEws(state), cert).start()
    assert isinstance(server, KeepAliveFakeServer)
    state.base_url = server.url
    return state, server
