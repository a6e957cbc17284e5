"""The Entra ID application through msal: the consent dialog's auth-code flow, on-behalf-of, admin consent.

One ``ConfidentialClientApplication`` built from ``MS_CLIENT_ID``, ``MS_CLIENT_SECRET`` and
``MS_AUTHORITY`` (or a given tenant) serves:

* the auth-code flow in the consent dialog (:meth:`MicrosoftAuth.start_consent` /
  :meth:`MicrosoftAuth.finish_consent`; msal adds PKCE and the OpenID nonce, and the ID token's
  audience and issuer are checked here);
* on-behalf-of (:meth:`MicrosoftAuth.on_behalf_of`) from the task pane's Nested App Authentication
  token, so sync can start right after the Salesforce login when consent already exists;
* the admin-consent URL a tenant administrator opens before client credentials work.

The tokens a sync run uses afterwards (per-mailbox cache, client credentials) live in
:mod:`backend.connectors.graph.tokens`; error answers become domain errors in
:mod:`backend.connectors.graph.signin_errors`. Logs carry :func:`fingerprint`, never tokens.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import msal

from backend.connectors.common import OAuthApp
from backend.connectors.graph.entra import (
    GRAPH_SCOPES,
    MULTI_TENANT,
    authority_for,
    authority_origin,
    is_microsoft_authority,
    usable_tenant,
    valid_tenant,
)
from backend.connectors.graph.signin_errors import consent_error, obo_error, signin_reachable
from backend.errors import SetupFailed, Unavailable
from backend.security.crypto import fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grant:
    """Delegated Graph access for one person: a fresh access token and the msal cache that keeps it."""

    access_token: str = field(repr=False)
    cache: str = field(repr=False)  # serialized msal token cache (refresh token inside): a secret
    home_account_id: str
    tenant_id: str
    object_id: str
    username: str

    def connection(self, via: str) -> dict[str, Any]:
        """The non-secret connection details stored with the sync mailbox."""
        return {
            "tenant_id": self.tenant_id,
            "home_account_id": self.home_account_id,
            "object_id": self.object_id,
            "username": self.username,
            "via": via,
        }


class MicrosoftAuth(OAuthApp):
    """The Entra ID application: msal apps for the configured (or a given) tenant."""

    # Registered as a Web redirect URI of the app.
    callback_path = "/auth/microsoft/callback"

    @property
    def admin_consent_redirect_uri(self) -> str:
        """Where the admin-consent endpoint returns (also registered in the app)."""
        return f"{self.settings.PUBLIC_BASE_URL}/auth/microsoft/admin-consent/callback"

    def build_app(
        self, tenant: str | None = None, cache: msal.TokenCache | None = None
    ) -> msal.ConfidentialClientApplication:
        """An msal app for ``tenant`` with ``cache``; Unavailable when the authority cannot be loaded."""
        extra: dict[str, Any] = {}
        if not is_microsoft_authority(self.settings):
            # msal would ask login.microsoftonline.com whether this host is an authority; a host we
            # were configured with is trusted by that configuration instead.
            extra = {"instance_discovery": False, "validate_authority": False}
        try:
            with signin_reachable():  # inside, so a network error is never taken for a ValueError
                return msal.ConfidentialClientApplication(
                    self.settings.MS_CLIENT_ID,
                    client_credential=self.settings.MS_CLIENT_SECRET,
                    authority=authority_for(self.settings, tenant),
                    token_cache=cache,
                    http_client=self.session,
                    **extra,
                )
        except ValueError:
            raise Unavailable("Microsoft sign-in's configuration could not be loaded.") from None

    # --- the consent dialog (auth-code flow) -------------------------------------------------

    def start_consent(self, state: str, login_hint: str = "") -> dict[str, Any]:
        """Begin the auth-code flow; returns msal's flow dict (keep it server-side, send ``auth_uri``)."""
        app = self.build_app()
        with warnings.catch_warnings():
            # msal recommends response_mode=form_post; the contract's callback is a GET, and the
            # code in the query is single-use, PKCE-bound and redeemable only with our secret.
            warnings.filterwarnings("ignore", message=".*form_post.*", category=UserWarning)
            flow: dict[str, Any] = app.initiate_auth_code_flow(
                list(GRAPH_SCOPES),
                redirect_uri=self.redirect_uri,
                state=state,
                login_hint=login_hint or None,
                prompt="select_account",
            )
        return flow

    def finish_consent(self, flow: dict[str, Any], response: Mapping[str, str]) -> Grant:
        """Redeem the callback's code (msal checks state, PKCE and nonce); SetupFailed says what went wrong."""
        cache = msal.SerializableTokenCache()
        app = self.build_app(cache=cache)
        return self._grant(app, cache, self._redeem(app, flow, response, "the add-in"))

    def _redeem(self, app: msal.ConfidentialClientApplication, flow: dict[str, Any], response: Mapping[str, str],
                start_from: str) -> dict[str, Any]:
        """msal's answer to the callback's code; SetupFailed (saying to start again from ``start_from``) otherwise."""
        try:
            with signin_reachable():  # inside, so a network error is never taken for a ValueError
                result: dict[str, Any] = app.acquire_token_by_auth_code_flow(dict(flow), dict(response))
        except ValueError:
            # msal compares the state it generated the flow with against the answer's.
            raise SetupFailed("state_invalid", "The Microsoft sign-in answer was not for this sign-in. "
                                               f"Start again from {start_from}.") from None
        except RuntimeError:
            # msal's id-token nonce check: the id token was minted for another sign-in request.
            raise SetupFailed("nonce_mismatch", "Microsoft's answer did not match this sign-in (nonce). "
                                                f"Start again from {start_from}.") from None
        if "error" in result:
            raise consent_error(self.settings, str(result.get("error", "")), str(result.get("error_description", "")))
        return result

    def _grant(self, app: msal.ConfidentialClientApplication, cache: msal.SerializableTokenCache,
               result: dict[str, Any]) -> Grant:
        claims = result.get("id_token_claims") or {}
        if claims.get("aud") and claims.get("aud") != self.settings.MS_CLIENT_ID:
            raise SetupFailed("code_rejected",
                              "Microsoft's answer was issued to another app. Start again from the add-in.")
        tid = str(claims.get("tid", ""))
        oid = str(claims.get("oid", ""))
        accounts = app.get_accounts()
        account = next((a for a in accounts if a.get("local_account_id") == oid), accounts[0] if accounts else None)
        refresh = list(cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN))
        if not result.get("access_token") or account is None or not refresh:
            # Without a refresh token sync would stop an hour from now: refuse it now instead.
            raise SetupFailed("offline_access_missing", "Microsoft did not grant offline access, so sync could "
                                                        "not run in the background. Try again, or ask your "
                                                        "administrator to allow offline access for the app.")
        home = str(account.get("home_account_id", ""))
        if not tid and "." in home:
            tid = home.split(".", 1)[1]
        if not oid:
            oid = str(account.get("local_account_id", ""))
        issuer = str(claims.get("iss", ""))
        if tid and issuer and not issuer.rstrip("/").endswith(f"/{tid}/v2.0"):
            raise SetupFailed("wrong_tenant", "Microsoft's answer names two different organisations. Start again.")
        log.info("microsoft grant tenant=%s account=%s", tid, fingerprint(home))
        return Grant(
            access_token=str(result["access_token"]),
            cache=cache.serialize(),
            home_account_id=home,
            tenant_id=tid,
            object_id=oid,
            username=str(account.get("username", "") or claims.get("preferred_username", "")),
        )

    # --- the administrator's sign-in before tenant-wide consent -----------------------------------

    def start_admin_signin(self, state: str, tenant: str | None = None) -> dict[str, Any]:
        """Begin the administrator's sign-in: consent for the organisation (only an administrator can
        give it, so a code proves one) to the app's permissions, in the tenant it names."""
        app = self.build_app(tenant)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*form_post.*", category=UserWarning)
            flow: dict[str, Any] = app.initiate_auth_code_flow(
                [f"{self.settings.GRAPH_URL}/.default"], redirect_uri=self.redirect_uri, state=state,
                prompt="admin_consent")
        return flow

    def signed_in_tenant(self, flow: dict[str, Any], response: Mapping[str, str]) -> str:
        """The tenant of the account that finished :meth:`start_admin_signin` (msal checks state, PKCE, nonce)."""
        result = self._redeem(self.build_app(), flow, response, "the console")
        claims = result.get("id_token_claims") or {}
        tid = str(claims.get("tid", ""))
        if claims.get("aud") != self.settings.MS_CLIENT_ID or not valid_tenant(tid) or tid in MULTI_TENANT:
            raise SetupFailed("code_rejected", "Microsoft's answer did not name your organisation. Start again.")
        issuer = str(claims.get("iss", ""))
        if issuer and not issuer.rstrip("/").endswith(f"/{tid}/v2.0"):
            raise SetupFailed("wrong_tenant", "Microsoft's answer names two different organisations. Start again.")
        return tid

    # --- on-behalf-of ---------------------------------------------------------------------------

    def on_behalf_of(self, assertion: str, tenant: str) -> Grant:
        """Trade the pane's NAA token for Graph access; SetupFailed("consent_required") when not consented."""
        cache = msal.SerializableTokenCache()
        app = self.build_app(usable_tenant(tenant), cache)
        with signin_reachable():
            result = app.acquire_token_on_behalf_of(assertion, list(GRAPH_SCOPES))
        if "error" in result:
            raise obo_error(result)
        return self._grant(app, cache, result)

    # --- admin consent --------------------------------------------------------------------------

    def admin_consent_url(self, tenant: str, state: str) -> str:
        """Where a tenant administrator grants the app's application permissions for the whole tenant."""
        if not valid_tenant(tenant):
            raise ValueError("not a tenant id")
        params = {
            "client_id": self.settings.MS_CLIENT_ID,
            "scope": f"{self.settings.GRAPH_URL}/.default",
            "redirect_uri": self.admin_consent_redirect_uri,
            "state": state,
        }
        return f"{authority_origin(self.settings)}/{tenant}/v2.0/adminconsent?{urlencode(params)}"
