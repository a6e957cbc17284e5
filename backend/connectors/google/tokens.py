"""Where a sync run's Google access tokens come from: the mailbox's refresh token, through google-auth.

* :class:`MailboxTokens`: ``google.oauth2.credentials.Credentials`` built from the mailbox secret
  :data:`REFRESH_SECRET` (stored only encrypted), refreshed at ``GOOGLE_TOKEN_URL`` over our
  outbound session; a refresh token Google rotated is written back;
* :class:`StaticToken`: one access token (the consent dialog reads the profile with it).

``invalid_grant`` (revoked, password changed, unused for six months, the seven-day life of a
"Testing" app) is :class:`~backend.errors.AuthRevoked`; a refused client is the server's problem
(:class:`~backend.errors.ServiceMisconfigured`); anything transient is ``Unavailable``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
import requests

from backend.config import Settings
from backend.connectors.common import StaticToken as BaseStaticToken
from backend.connectors.google.oauth import SCOPES
from backend.errors import AuthRevoked, ServiceMisconfigured, Unavailable

log = logging.getLogger(__name__)

# The mailbox secret holding the Google refresh token (encrypted by the secret store).
REFRESH_SECRET = "google_refresh_token"  # noqa: S105 - the name of a secret, not one
_RECONNECT = "Connect Gmail again."


class StaticToken(BaseStaticToken):
    """A token source around one access token (the consent dialog reads the mailbox with it)."""

    issuer = "Google"


def refresh_failure(exc: google.auth.exceptions.GoogleAuthError) -> Exception:
    """google-auth's refresh error as a domain error."""
    if isinstance(exc, google.auth.exceptions.TransportError):
        return Unavailable("Google's token endpoint could not be reached.")
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    error = str(data.get("error", ""))
    if error == "invalid_grant":
        return AuthRevoked(f"Google no longer accepts this mailbox's sign-in (revoked or expired). {_RECONNECT}")
    if error in ("invalid_client", "unauthorized_client", "deleted_client"):
        log.error("google refused our OAuth client error=%s", error)
        return ServiceMisconfigured("Google refused this server's OAuth client. An administrator must fix the "
                                    "Google Cloud credentials.")
    if getattr(exc, "retryable", False) or not error:
        return Unavailable("Google's token endpoint failed.")
    return AuthRevoked(f"Google refused to renew this mailbox's access ({error[:60]}). {_RECONNECT}")


class MailboxTokens:
    """Access tokens of one mailbox from its stored refresh token (google-auth credentials)."""

    def __init__(self, settings: Settings, secrets: Any, session: requests.Session) -> None:
        self.settings = settings
        self.secrets = secrets  # MailboxSecrets: get/put of this mailbox's secrets
        self.session = session
        self._lock = threading.Lock()
        self._credentials: google.oauth2.credentials.Credentials | None = None

    def _load(self) -> google.oauth2.credentials.Credentials:
        if self._credentials is None:
            refresh = self.secrets.get(REFRESH_SECRET)
            if not refresh:
                raise AuthRevoked(f"There is no Google sign-in for this mailbox. {_RECONNECT}")
            self._credentials = google.oauth2.credentials.Credentials(
                token=None,
                refresh_token=refresh,
                token_uri=self.settings.GOOGLE_TOKEN_URL,
                client_id=self.settings.GOOGLE_CLIENT_ID,
                client_secret=self.settings.GOOGLE_CLIENT_SECRET,
                scopes=list(SCOPES),
            )
        return self._credentials

    def access_token(self, force_refresh: bool = False) -> str:
        """A valid access token, refreshed at Google's token endpoint when needed."""
        with self._lock:
            credentials = self._load()
            if force_refresh or not credentials.valid:
                before = credentials.refresh_token
                try:
                    credentials.refresh(google.auth.transport.requests.Request(self.session))
                except google.auth.exceptions.GoogleAuthError as exc:
                    raise refresh_failure(exc) from None
                if credentials.refresh_token and credentials.refresh_token != before:
                    # Rare with Google, but a rotated refresh token must not be lost.
                    self.secrets.put(REFRESH_SECRET, credentials.refresh_token)
            return str(credentials.token)
