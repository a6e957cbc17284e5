"""Google Workspace read with the org's service account (domain-wide delegation), for mass activation.

The Workspace administrator authorises the service account's client id for :data:`DELEGATED_SCOPES`
under Security > API controls > Domain-wide delegation; the org's administrator uploads its JSON key
in the console (:func:`parse_key` checks it; it is kept only as an encrypted org secret,
:data:`SECRET_KEY`). :class:`DelegatedTokens` signs an assertion as the person
(google-auth's ``with_subject``) and trades it at ``GOOGLE_TOKEN_URL`` over our outbound session,
never at the key file's own ``token_uri``: an uploaded file must not choose where signed assertions go.

Google's refusals become :class:`DelegationRefused` (an :class:`~backend.errors.AuthRevoked`): the
key deleted or the delegation withdrawn are the org's (``org_wide``); "Invalid email or User ID" is
that one person's mailbox missing.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

from backend.config import Settings
from backend.connectors.google.oauth import CALENDAR_EVENTS_READONLY, GMAIL_READONLY
from backend.errors import AuthRevoked, SetupFailed, Unavailable
from backend.security.crypto import fingerprint

log = logging.getLogger(__name__)

# The org secret holding the service account's JSON key (encrypted by the secret store).
SECRET_KEY = "google_service_account_key"  # noqa: S105 - the secret's name, not a secret
# Exactly what the Workspace admin authorises: a grant asking for any scope beyond the entry is refused whole.
DELEGATED_SCOPES: tuple[str, ...] = (GMAIL_READONLY, CALENDAR_EVENTS_READONLY)
MAX_KEY_BYTES = 8 * 1024
_CLIENT_ID = re.compile(r"\d{10,30}")
_EMAIL = re.compile(r"[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_KEY_ID = re.compile(r"[0-9a-fA-F]{8,64}")
# Reasons of a refusal.
KEY_REFUSED = "key_refused"
NOT_AUTHORISED = "delegation_not_authorised"
NO_USER = "mailbox_not_found"


class DelegationRefused(AuthRevoked):
    """Google refused a delegated token: the org's key or delegation (``org_wide``), or this person (no such user)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def org_wide(self) -> bool:
        """True when every person's token would be refused alike (the key, or the DWD entry)."""
        return self.reason != NO_USER


@dataclass(frozen=True)
class ServiceAccountKey:
    """A checked service account key; ``info`` holds the private key and never leaves the connector."""

    client_email: str
    client_id: str
    private_key_id: str
    project_id: str
    info: dict[str, str] = field(repr=False)

    def text(self) -> str:
        """The key as stored (the org secret's value)."""
        return json.dumps(self.info, sort_keys=True)


def _bad(message: str) -> SetupFailed:
    problem = SetupFailed("invalid_key", message)
    problem.credentials_sent = False
    return problem


def parse_key(raw: str | dict[str, Any]) -> ServiceAccountKey:
    """Check a service account's JSON key (its file's text, or the parsed object); SetupFailed ``invalid_key``."""
    data: Any = raw
    if isinstance(raw, str):
        if len(raw.encode("utf-8", "replace")) > MAX_KEY_BYTES:
            raise _bad("The key file is too large to be a service account key.")
        try:
            data = json.loads(raw)
        except ValueError:
            raise _bad("The key file is not JSON: upload the JSON key of the service account.") from None
    if not isinstance(data, dict):
        raise _bad("The key file is not a JSON object: upload the JSON key of the service account.")
    if data.get("type") != "service_account":
        raise _bad("This is not a service account key (its type must be service_account). Create a JSON key "
                   "under IAM & Admin > Service accounts > Keys.")
    fields = {name: data.get(name) for name in ("client_email", "client_id", "private_key", "private_key_id")}
    if not all(isinstance(v, str) and v for v in fields.values()):
        missing = ", ".join(sorted(k for k, v in fields.items() if not isinstance(v, str) or not v))
        raise _bad(f"The key file has no {missing}.")
    email, client_id, pem, key_id = (str(fields[k]) for k in ("client_email", "client_id", "private_key",
                                                               "private_key_id"))
    if not _EMAIL.fullmatch(email) or len(email) > 320:
        raise _bad("The key's client_email is not a service account's address.")
    if not _CLIENT_ID.fullmatch(client_id):
        raise _bad("The key's client_id is not a Google client id (digits only).")
    if not _KEY_ID.fullmatch(key_id):
        raise _bad("The key's private_key_id is not a key id.")
    try:
        private = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise _bad("The key's private_key is not a PEM private key.") from None
    if not isinstance(private, rsa.RSAPrivateKey) or private.key_size < 2048:
        raise _bad("The key's private_key is not a 2048-bit (or larger) RSA key.")
    project = data.get("project_id")
    info = {"type": "service_account", "client_email": email, "client_id": client_id, "private_key": pem,
            "private_key_id": key_id, "project_id": project if isinstance(project, str) else ""}
    return ServiceAccountKey(email, client_id, key_id, info["project_id"], info)


def delegation_failure(exc: google.auth.exceptions.GoogleAuthError, key: ServiceAccountKey,
                       subject: str) -> Exception:
    """google-auth's refusal of a delegated token as a domain error."""
    if isinstance(exc, google.auth.exceptions.TransportError):
        return Unavailable("Google's token endpoint could not be reached.")
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    error, description = str(data.get("error", "")), str(data.get("error_description", ""))
    log.info("google delegated token refused client=%s subject=%s error=%s", key.client_id,
             fingerprint(subject), error)
    if error == "invalid_grant" and "invalid email or user id" in description.lower():
        return DelegationRefused(NO_USER, f"Google Workspace has no user {subject}.")
    if error == "unauthorized_client":
        return DelegationRefused(NOT_AUTHORISED, (
            f"The Workspace administrator has not authorised client id {key.client_id} for "
            f"{' and '.join(DELEGATED_SCOPES)} (Admin console > Security > API controls > Domain-wide delegation)"))
    if error in ("invalid_grant", "invalid_client", "deleted_client", "disabled_client"):
        return DelegationRefused(KEY_REFUSED, (
            f"Google no longer accepts the service account key of {key.client_email} ({description[:80] or error}): "
            "it was deleted or the service account disabled. Upload a new JSON key"))
    if getattr(exc, "retryable", False) or not error:
        return Unavailable("Google's token endpoint failed.")
    return DelegationRefused(KEY_REFUSED, f"Google refused the service account's assertion ({error[:60]})")


class DelegatedTokens:
    """Access tokens as one person of the Workspace, from the org's service account key."""

    def __init__(self, settings: Settings, key: ServiceAccountKey, subject: str, session: requests.Session) -> None:
        self.key = key
        self.subject = subject.strip().lower()
        self.session = session
        self._lock = threading.Lock()
        # The token URL is ours, whatever the uploaded file says; the default universe (a key naming another
        # one would make google-auth skip the token endpoint and sign its own tokens).
        self._credentials = service_account.Credentials.from_service_account_info(
            {**key.info, "token_uri": settings.GOOGLE_TOKEN_URL}, scopes=list(DELEGATED_SCOPES),
        ).with_subject(self.subject)

    def access_token(self, force_refresh: bool = False) -> str:
        """A valid access token as the subject, from a freshly signed assertion when needed."""
        with self._lock:
            if force_refresh or not self._credentials.valid:
                try:
                    self._credentials.refresh(google.auth.transport.requests.Request(self.session))
                except google.auth.exceptions.GoogleAuthError as exc:
                    raise delegation_failure(exc, self.key, self.subject) from None
            return str(self._credentials.token)


def delegation_refused(settings: Settings, key: ServiceAccountKey, subject: str,
                       session: requests.Session) -> str | None:
    """Why Google refuses the org's key or delegation now (one token request as ``subject``), or None."""
    try:
        DelegatedTokens(settings, key, subject, session).access_token()
    except DelegationRefused as exc:
        return exc.message if exc.org_wide else None
    except Unavailable:
        return None  # nothing proven either way: the person's run is retried as usual
    return None
