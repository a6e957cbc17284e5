"""The fake Exchange server's data: directory users, mailbox items, the change log, sync states, switches."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sandbox.ews.soap import EXCHANGE_PRINCIPAL, METADATA_PATH


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



def new_id(prefix: str = "AAMkAD") -> str:
    """A fresh random EWS id (or change key, with its prefix)."""
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
    # The Windows time zone the item was made in (StartTimeZone/EndTimeZone); an all-day item's
    # Start and End are midnights there, sent in UTC.
    timezone: str = "UTC"
    # Series (see sandbox.ews.recurrence): the repeat, occurrences deleted and changed (by original
    # start), and for an occurrence its original start.
    interval_days: int = 1
    deleted_occurrences: list[datetime] = field(default_factory=list)
    exceptions: dict[datetime, dict[str, Any]] = field(default_factory=dict)
    original_start: datetime | None = None

    def __post_init__(self) -> None:
        self.changekey = self.changekey or new_id("CQAAAB")


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
    # Whether anonymous Autodiscover v2 (JSON) is served (sandbox/ews/autodiscover_v2.py); older servers 404.
    autodiscover_v2: bool = False
    # Raw bytes served as the metadata document instead of the real one.
    metadata_override: bytes | None = None
    # ApplicationImpersonation: service account email -> the mailboxes it may impersonate ("*": all).
    impersonation: dict[str, set[str]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _seq: Iterable[int] = field(default_factory=lambda: itertools.count(1))
    _secret: bytes = field(default_factory=lambda: os.urandom(16))
    _ntlm_pending: dict[int, Any] = field(default_factory=dict)  # connection -> its NTLM acceptor context
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
            id=new_id(), owner=owner.lower(), folder=folder, kind="message", subject=subject, body=body,
            sensitivity=sensitivity, message_id=message_id if message_id is not None else
            f"<{secrets.token_hex(8)}@{sender.split('@')[-1]}>",
            sender=(sender, sender.split("@")[0].title()), to=[(a, "") for a in to], cc=[(a, "") for a in cc or []],
            sent=stamp - timedelta(seconds=5), received=stamp, is_draft=is_draft,
        )
        return self.add_item(item)

    def add_event(self, owner: str, *, subject: str, start: datetime, end: datetime, organizer: str,
                  attendees: list[str], optional: list[str] | None = None, uid: str | None = None,
                  body: str = "", sensitivity: str = "Normal", recurring: bool = False,
                  recurrence_end: date | None = None, location: str = "", is_all_day: bool = False,
                  timezone: str = "UTC") -> str:
        """A calendar item (a single meeting, or a recurring series master)."""
        item = EwsItem(
            id=new_id(), owner=owner.lower(), folder="calendar", kind="calendar", subject=subject, body=body,
            sensitivity=sensitivity, uid=uid or secrets.token_hex(16).upper(), start=start, end=end,
            organizer=(organizer, ""), required=[(a, "") for a in attendees],
            optional=[(a, "") for a in optional or []], item_type="RecurringMaster" if recurring else "Single",
            recurrence_end=recurrence_end, location=location, is_all_day=is_all_day, timezone=timezone,
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
            item.changekey = new_id("CQAAAB")
            self._log(item, "update")

    def modify_occurrence(self, master_id: str, original_start: datetime, **changes: Any) -> None:
        """Move or retitle one occurrence of a series (an exception; an Update of the master)."""
        with self.lock:
            master = self.items[master_id]
            if "attendees" in changes:
                changes["required"] = [(a, "") for a in changes.pop("attendees")]
            master.exceptions[original_start] = {**master.exceptions.get(original_start, {}), **changes}
            master.changekey = new_id("CQAAAB")
            self._log(master, "update")

    def delete_occurrence(self, master_id: str, original_start: datetime) -> None:
        """Delete one occurrence of a series (an Update of the master, listed in DeletedOccurrences)."""
        with self.lock:
            master = self.items[master_id]
            master.deleted_occurrences.append(original_start)
            master.exceptions.pop(original_start, None)
            master.changekey = new_id("CQAAAB")
            self._log(master, "update")

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

