"""A user's live Salesforce credentials: tokens from the secret store, refreshed once when refused."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from backend.connectors.salesforce.oauth import SalesforceOAuth, TokenExpired, TokenSet
from backend.errors import AuthRevoked

T = TypeVar("T")

# Salesforce sessions last two hours by default; a cached token is trusted for less than that.
ACCESS_TOKEN_CACHE_SECONDS = 90 * 60


class SalesforceCredentials:
    """A user's Salesforce tokens: read from the secret store, refreshed when refused.

    The access token is cached encrypted; a call refused with an expired session refreshes once
    and retries. A refused refresh token raises :class:`AuthRevoked` (the person must log in).
    """

    SECRET_KIND = "user"  # noqa: S105 - a key name
    REFRESH = "sf_refresh"
    ACCESS = "sf_access"

    def __init__(self, oauth: SalesforceOAuth, secrets_store: Any, uid: str, login_url: str, instance_url: str) -> None:
        self.oauth = oauth
        self.secrets = secrets_store
        self.uid = uid
        self.login_url = login_url
        self.instance_url = instance_url
        self.refreshes = 0
        # The token read (or refreshed) last and when it was issued: a run makes dozens of calls,
        # and each read of the store is a round trip and a decryption.
        self._held: tuple[float, str] | None = None

    def store_tokens(self, tokens: TokenSet) -> None:
        """Save a fresh token set (encrypted)."""
        if tokens.refresh_token:
            self.secrets.put(self.SECRET_KIND, self.uid, self.REFRESH, tokens.refresh_token)
        issued = int(time.time())
        self.secrets.put(self.SECRET_KIND, self.uid, self.ACCESS, f"{issued}|{tokens.access_token}")
        self._held = (float(issued), tokens.access_token)
        self.instance_url = tokens.instance_url

    def access_token(self) -> str:
        """A cached access token, or a freshly refreshed one."""
        held = self._held
        if held is not None and time.time() - held[0] < ACCESS_TOKEN_CACHE_SECONDS:
            return held[1]
        cached = self.secrets.get(self.SECRET_KIND, self.uid, self.ACCESS)
        if cached:
            stamp, _, token = cached.partition("|")
            if token and stamp.isdigit() and time.time() - int(stamp) < ACCESS_TOKEN_CACHE_SECONDS:
                self._held = (float(stamp), str(token))
                return str(token)
        return self.refresh()

    def refresh(self) -> str:
        """Refresh the access token now."""
        refresh_token = self.secrets.get(self.SECRET_KIND, self.uid, self.REFRESH)
        if not refresh_token:
            raise AuthRevoked("There is no Salesforce login for this user.")
        tokens = self.oauth.refresh(self.login_url, refresh_token)
        self.refreshes += 1
        self.store_tokens(tokens)
        return tokens.access_token

    def call(self, fn: Callable[[str, str], T]) -> T:
        """Run ``fn(instance_url, access_token)``; on TokenExpired refresh once and run it again."""
        try:
            return fn(self.instance_url, self.access_token())
        except TokenExpired:
            token = self.refresh()
            try:
                return fn(self.instance_url, token)
            except TokenExpired:
                raise AuthRevoked("Salesforce refused a freshly refreshed session.") from None

    def forget(self) -> None:
        """Delete the stored tokens (logout or revoked)."""
        self.secrets.delete(self.SECRET_KIND, self.uid, self.REFRESH)
        self.secrets.delete(self.SECRET_KIND, self.uid, self.ACCESS)
        self._held = None
