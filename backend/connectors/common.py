"""What the provider connectors share: the OAuth app and PKCE, token sources, and the answer they read.

Only logic that is the same for every provider lives here; each provider's endpoints, limits, error
mapping and retries stay in its own package.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import msgspec
import requests

from backend.config import Settings
from backend.errors import AuthRevoked
from backend.net.outbound import make_session


def pkce_pair() -> tuple[str, str]:
    """A PKCE (verifier, S256 challenge) pair."""
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return verifier, challenge


class OAuthApp:
    """One of our OAuth clients: the settings, the outbound session, and the dialog's callback."""

    # Our callback's path, registered with the provider as a redirect URI.
    callback_path: ClassVar[str] = ""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.session = session or make_session(settings.OUTBOUND_CA_BUNDLE, settings.OUTBOUND_TIMEOUT_SECONDS)

    @property
    def redirect_uri(self) -> str:
        """The sign-in dialog's callback, as registered with the provider."""
        return f"{self.settings.PUBLIC_BASE_URL}{self.callback_path}"


class TokenSource(Protocol):
    """Something that hands a mailbox client an access token."""

    def access_token(self, force_refresh: bool = False) -> str:
        """A valid access token (a new one when ``force_refresh``)."""
        ...


class StaticToken:
    """A token source around one access token (a consent dialog reads the mailbox with it)."""

    # Who issued the token, for the error when it is refused.
    issuer: ClassVar[str] = "The provider"

    def __init__(self, token: str) -> None:
        self._token = token

    def access_token(self, force_refresh: bool = False) -> str:
        """The token; a refresh is impossible, so a refused token is final."""
        if force_refresh:
            raise AuthRevoked(f"{self.issuer} refused the new sign-in's access token.")
        return self._token


@dataclass
class HttpAnswer:
    """A provider's answer (a whole HTTP response or one part of a batch)."""

    status: int
    headers: dict[str, str]
    body: Any

    def header(self, name: str) -> str:
        """A header, case-insensitively ("" when absent)."""
        lower = name.lower()
        return next((str(v) for k, v in self.headers.items() if k.lower() == lower), "")


def json_body(raw: requests.Response) -> Any:
    """A response's JSON body; ``{}`` when it is empty or not JSON (the status still tells what happened)."""
    content = raw.content
    if not content:
        return {}
    try:
        # msgspec parses UTF-8 JSON in about half the time of the json module (a backfill reads
        # 200 pages of mail); anything it refuses (another charset, NaN) gets the lenient parser.
        return msgspec.json.decode(content)
    except msgspec.DecodeError:
        pass
    try:
        return raw.json()
    except ValueError:
        return {}
