"""Where a sync run's Graph access tokens come from: the mailbox's msal cache, client credentials, or one token.

* :class:`MailboxTokens`: silent acquisition per mailbox from its msal token cache, kept encrypted as
  the mailbox secret ``msal_cache`` and written back only when msal changed it;
* :class:`AppOnlyTokens`: client credentials once a tenant administrator gave admin consent;
* :class:`StaticToken`: one access token (the consent dialog reads ``/me`` with it).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import msal

from backend.connectors.common import StaticToken as BaseStaticToken
from backend.connectors.graph.entra import GRAPH_SCOPES, MULTI_TENANT, usable_tenant, valid_tenant
from backend.connectors.graph.identity import MicrosoftAuth
from backend.connectors.graph.signin_errors import signin_reachable, token_from_result
from backend.errors import AuthRevoked
from backend.security.crypto import fingerprint

# The mailbox secret holding the serialized msal token cache (encrypted by the secret store).
CACHE_SECRET = "msal_cache"  # noqa: S105 - the name of a secret, not one


class StaticToken(BaseStaticToken):
    """A token source around one access token (the consent dialog reads the mailbox with it)."""

    issuer = "Microsoft"


class MailboxTokens:
    """Delegated tokens of one mailbox, acquired silently from its encrypted msal cache."""

    def __init__(self, auth: MicrosoftAuth, secrets: Any, connection: Mapping[str, Any]) -> None:
        self.auth = auth
        self.secrets = secrets  # MailboxSecrets: get/put of this mailbox's secrets
        self.connection = dict(connection)
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None
        self._cache: msal.SerializableTokenCache | None = None

    def _load(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            blob = self.secrets.get(CACHE_SECRET)
            if not blob:
                raise AuthRevoked("There is no Microsoft sign-in for this mailbox. Connect Microsoft 365 again.")
            cache = msal.SerializableTokenCache()
            try:
                cache.deserialize(blob)
            except ValueError:
                raise AuthRevoked("The stored Microsoft sign-in is unreadable. Connect Microsoft 365 again.") from None
            tenant = str(self.connection.get("tenant_id", "")) or None
            self._app = self.auth.build_app(usable_tenant(tenant), cache)
            self._cache = cache
        return self._app

    def access_token(self, force_refresh: bool = False) -> str:
        """A valid access token (refreshing through the cached refresh token when needed)."""
        with self._lock:
            app = self._load()
            accounts = app.get_accounts()
            wanted = self.connection.get("home_account_id")
            account = next((a for a in accounts if a.get("home_account_id") == wanted), None)
            if account is None and not wanted and accounts:
                account = accounts[0]
            try:
                with signin_reachable():
                    result = app.acquire_token_silent_with_error(list(GRAPH_SCOPES), account,
                                                                 force_refresh=force_refresh)
            finally:
                self._save()
            return token_from_result(result, f"account={fingerprint(str(wanted or ''))}")

    def _save(self) -> None:
        # Written back only when msal changed it (a refresh rotated the refresh token or added an
        # access token); serialize() resets the flag.
        if self._cache is not None and self._cache.has_state_changed:
            self.secrets.put(CACHE_SECRET, self._cache.serialize())


class AppOnlyTokens:
    """Application tokens (client credentials) for a tenant whose administrator consented."""

    def __init__(self, auth: MicrosoftAuth, tenant: str) -> None:
        if not valid_tenant(tenant) or tenant in MULTI_TENANT:
            raise AuthRevoked("App-only access needs the organisation's tenant id. Ask your administrator "
                              "to activate sync again.")
        self.auth = auth
        self.tenant = tenant
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None

    def access_token(self, force_refresh: bool = False) -> str:
        """An application token for Graph in this tenant."""
        with self._lock:
            if self._app is None or force_refresh:
                # A fresh in-memory cache is how msal is told to skip a cached token.
                self._app = self.auth.build_app(self.tenant, msal.TokenCache())
            with signin_reachable():
                result = self._app.acquire_token_for_client([f"{self.auth.settings.GRAPH_URL}/.default"])
            return token_from_result(result, f"tenant={self.tenant}")


def check_app_only(auth: MicrosoftAuth, tenant: str) -> None:
    """Prove a tenant's admin consent by obtaining an application token (AuthRevoked when refused)."""
    AppOnlyTokens(auth, tenant).access_token()
