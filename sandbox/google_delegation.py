"""Google Workspace domain-wide delegation in the fake Google: service accounts, their keys, the admin's DWD entries.

The token endpoint (:mod:`sandbox.google`) hands a ``urn:ietf:params:oauth:grant-type:jwt-bearer``
grant to :meth:`Delegation.verify`, which checks it as Google does:

* the ``assertion`` is an RS256 JWT whose ``kid`` names a registered, unrevoked key of the service
  account in ``iss``, signed by it, with ``aud`` Google's token URL (or the fake's own) and ``exp``
  at most one hour after ``iat``: otherwise 400 ``invalid_grant`` ("Invalid JWT Signature." for an unknown, revoked or
  foreign key);
* with a ``sub``, every requested scope must be authorised for the account's client id in the
  Workspace admin's Security > API controls > Domain-wide delegation (:meth:`Delegation.authorise`):
  otherwise 401 ``unauthorized_client``;
* the ``sub`` must be a user of the Workspace domain(s) (the token endpoint checks that, since users
  live in :class:`sandbox.google.FakeGoogleState`): otherwise 400 ``invalid_grant`` "Invalid email or
  User ID".

:func:`new_service_account_key` makes a key file shaped exactly as the Cloud console downloads it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
BAD_SIGNATURE = "Invalid JWT Signature."
UNAUTHORIZED = ("Client is unauthorized to retrieve access tokens using this method, or client not authorized for "
                "any of the scopes requested.")
UNKNOWN_USER = "Invalid email or User ID"
SHORT_LIVED = ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check "
               "your iat and exp values in the JWT claim.")
MAX_LIFETIME = 3600
# Google tolerates a little clock skew on iat/exp.
LEEWAY = 300
# The audiences Google's token endpoint accepts (google-auth always signs the first, whatever token_uri is).
AUDIENCES = ("https://oauth2.googleapis.com/token", "https://www.googleapis.com/oauth2/v4/token",
             "https://accounts.google.com/o/oauth2/token")


class DelegationRefused(Exception):
    """The token endpoint's refusal of a JWT grant: (status, error, error_description)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description


@dataclass
class ServiceAccountKey:
    """One key of a service account (``private_key_id`` in the key file is its ``kid``)."""

    key_id: str
    client_email: str
    client_id: str
    public_pem: bytes
    revoked: bool = False


@dataclass(frozen=True)
class Verified:
    """What a valid assertion asks for."""

    client_email: str
    client_id: str
    subject: str
    scopes: tuple[str, ...]


@dataclass
class Delegation:
    """Service accounts and the Workspace admin's domain-wide delegation entries; tests change it directly."""

    keys: dict[str, ServiceAccountKey] = field(default_factory=dict)
    # client id -> the scopes the Workspace admin authorised for it (Domain-wide delegation).
    authorised: dict[str, frozenset[str]] = field(default_factory=dict)
    # The Workspace's domains: a ``sub`` must be a user in one of them.
    domains: set[str] = field(default_factory=set)
    # Other addresses a user signs in with (``sub`` accepted, not a send-as address): alias -> primary.
    nicknames: dict[str, str] = field(default_factory=dict)
    # Every JWT grant's claims (iss, sub, scope, aud), in order.
    grants: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def add_service_account(self, client_email: str, client_id: str, public_pem: bytes, key_id: str = "") -> str:
        """Register a key of a service account; returns the key id."""
        key_id = key_id or uuid.uuid4().hex
        with self.lock:
            self.keys[key_id] = ServiceAccountKey(key_id, client_email.lower(), client_id, public_pem)
        return key_id

    def authorise(self, client_id: str, scopes: list[str] | tuple[str, ...] | set[str]) -> None:
        """The Workspace admin's DWD entry for ``client_id`` (an empty list removes it)."""
        with self.lock:
            if scopes:
                self.authorised[client_id] = frozenset(scopes)
            else:
                self.authorised.pop(client_id, None)

    def revoke_key(self, key_id_or_email: str) -> None:
        """Delete a key (or every key of a service account): its assertions are refused from now on."""
        with self.lock:
            for key in self.keys.values():
                if key_id_or_email in (key.key_id, key.client_email):
                    key.revoked = True

    def in_domain(self, address: str) -> bool:
        """Whether an address belongs to one of the Workspace's domains."""
        return address.rpartition("@")[2].lower() in {d.lower() for d in self.domains}

    def verify(self, assertion: str, audience: str) -> Verified:
        """Check a JWT grant's assertion; DelegationRefused says what Google would answer."""
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise DelegationRefused(400, "invalid_grant", BAD_SIGNATURE) from None
        with self.lock:
            key = self.keys.get(str(header.get("kid", "")))
        if key is None or key.revoked or header.get("alg") != "RS256" or \
                str(claims.get("iss", "")).lower() != key.client_email:
            raise DelegationRefused(400, "invalid_grant", BAD_SIGNATURE)
        try:
            claims = jwt.decode(assertion, key.public_pem, algorithms=["RS256"], audience=[*AUDIENCES, audience],
                                leeway=LEEWAY,
                                options={"require": ["iss", "aud", "iat", "exp"]})
        except jwt.InvalidSignatureError:
            raise DelegationRefused(400, "invalid_grant", BAD_SIGNATURE) from None
        except jwt.InvalidAudienceError:
            raise DelegationRefused(400, "invalid_grant", "Invalid JWT: Failed audience check.") from None
        except jwt.PyJWTError:
            raise DelegationRefused(400, "invalid_grant", SHORT_LIVED) from None
        if int(claims["exp"]) - int(claims["iat"]) > MAX_LIFETIME or int(claims["iat"]) > time.time() + LEEWAY:
            raise DelegationRefused(400, "invalid_grant", SHORT_LIVED)
        scopes = tuple(str(claims.get("scope", "")).split())
        if not scopes:
            raise DelegationRefused(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        subject = str(claims.get("sub", "")).strip().lower()
        with self.lock:
            self.grants.append({k: claims.get(k) for k in ("iss", "sub", "scope", "aud")})
            allowed = self.authorised.get(key.client_id, frozenset())
        if subject and subject != key.client_email and not set(scopes) <= allowed:
            raise DelegationRefused(401, "unauthorized_client", UNAUTHORIZED)
        return Verified(key.client_email, key.client_id, subject, scopes)


def new_service_account_key(delegation: Delegation, client_email: str, client_id: str,
                            project_id: str = "sidebar-sync-test") -> dict[str, str]:
    """A new key of a service account, registered, as the JSON key file Google issues."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    key_id = delegation.add_service_account(client_email, client_id, public_pem, uuid.uuid4().hex[:40])
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": key_id,
        "private_key": private_pem,
        "client_email": client_email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
                                + client_email.replace("@", "%40"),
        "universe_domain": "googleapis.com",
    }


def key_file_text(key: dict[str, str]) -> str:
    """The key as the downloaded file's text."""
    return json.dumps(key, indent=2)
