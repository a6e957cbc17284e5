"""The one crypto module: encryption of secrets at rest, signed expiring values, token hashes.

* Secrets (refresh tokens, msal token caches, Exchange passwords) are encrypted with MultiFernet:
  the first key in ``ENCRYPTION_KEYS`` encrypts, every key decrypts, ``rotate`` re-encrypts.
* Signed values (OAuth state, one-time dialog codes, dialog tickets, API bearer tokens) use
  itsdangerous with one salt per purpose, so a value signed for one purpose is refused for another.
  itsdangerous signs; it does not encrypt: nothing secret goes into a signed value.
* Logs carry :func:`fingerprint` of a token, never the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from backend.config.syntax import fernet_key_problem


class InvalidKey(ValueError):
    """An encryption key is not a Fernet key."""


class DecryptError(Exception):
    """A stored secret cannot be decrypted with any configured key."""


class Purpose(StrEnum):
    """Salts for signed values: one per use, so they cannot be swapped."""

    OAUTH_STATE = "sidebar-sync.oauth-state"
    DIALOG_CODE = "sidebar-sync.dialog-code"
    DIALOG_TICKET = "sidebar-sync.dialog-ticket"
    API_TOKEN = "sidebar-sync.api-token"  # noqa: S105 - a salt name
    EMAIL_LINK = "sidebar-sync.email-link"


class SignatureInvalid(Exception):
    """A signed value was tampered with, signed for another purpose, or malformed."""


class SignatureTooOld(SignatureInvalid):
    """A signed value is authentic but older than allowed."""


def check_keys(keys: Sequence[str]) -> None:
    """Raise InvalidKey unless every key is a valid Fernet key."""
    # One syntax check for the whole package: config runs the same one at start.
    problem = fernet_key_problem(keys)
    if problem is not None:
        raise InvalidKey(problem)


def generate_key() -> str:
    """A new Fernet key, for ENCRYPTION_KEYS."""
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Encrypts and decrypts secrets at rest with MultiFernet."""

    def __init__(self, keys: Sequence[str]) -> None:
        check_keys(keys)
        self._fernet = MultiFernet([Fernet(k.encode("ascii")) for k in keys])
        self._current = Fernet(keys[0].encode("ascii"))

    def encrypt(self, plaintext: str) -> str:
        """Encrypt a secret under the current (first) key."""
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt a secret with whichever configured key made it."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise DecryptError("stored secret cannot be decrypted with the configured keys") from None

    def rotate(self, token: str) -> str:
        """Re-encrypt a stored secret under the current key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise DecryptError("stored secret cannot be decrypted with the configured keys") from None

    def is_current(self, token: str) -> bool:
        """True when the secret is already encrypted under the current key."""
        try:
            self._current.decrypt(token.encode("ascii"))
        except InvalidToken:
            return False
        return True


class Signer:
    """Signs and checks expiring values, one salt per :class:`Purpose`."""

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("a secret key is required to sign values")
        self._secret_key = secret_key
        self._serializers: dict[Purpose, URLSafeTimedSerializer] = {}

    def _serializer(self, purpose: Purpose) -> URLSafeTimedSerializer:
        if purpose not in self._serializers:
            self._serializers[purpose] = URLSafeTimedSerializer(self._secret_key, salt=purpose.value)
        return self._serializers[purpose]

    def sign(self, purpose: Purpose, payload: dict[str, Any]) -> str:
        """Sign a JSON-able payload for one purpose."""
        return str(self._serializer(purpose).dumps(payload))

    def unsign(self, purpose: Purpose, value: str, max_age: int) -> dict[str, Any]:
        """Check a signed value and return its payload; raise SignatureInvalid or SignatureTooOld."""
        if not isinstance(value, str) or not value or len(value) > 4096:
            raise SignatureInvalid("malformed signed value")
        try:
            payload = self._serializer(purpose).loads(value, max_age=max_age)
        except SignatureExpired:
            raise SignatureTooOld("signed value has expired") from None
        except BadSignature:
            raise SignatureInvalid("signature does not match") from None
        if not isinstance(payload, dict):
            raise SignatureInvalid("unexpected payload")
        return payload


def fingerprint(token: str | bytes) -> str:
    """A short, non-reversible tag of a token for logs and keys (never log the token itself)."""
    data = token.encode("utf-8") if isinstance(token, str) else token
    return hashlib.sha256(data).hexdigest()[:16]


def keyed_hash(secret_key: str, value: str) -> str:
    """An HMAC of a value under the app's secret: stable ids that reveal nothing without the key."""
    return hmac.new(secret_key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()


def keyed_hasher(secret_key: str) -> Callable[[str], str]:
    """:func:`keyed_hash` under one key, its HMAC keyed once (a run hashes 10,000 identifiers)."""
    keyed = hmac.new(secret_key.encode("utf-8"), digestmod=hashlib.sha256)

    def hash_value(value: str) -> str:
        mac = keyed.copy()
        mac.update(value.encode("utf-8"))
        return mac.hexdigest()

    return hash_value


def random_token(nbytes: int = 32) -> str:
    """A url-safe random value."""
    return secrets.token_urlsafe(nbytes)


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two strings without leaking where they differ."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
