"""Microsoft identity (Entra ID) through msal: consent, on-behalf-of, app-only and per-mailbox tokens.

Four ways to hold Graph access for a mailbox, all through one ``ConfidentialClientApplication``
built from ``MS_CLIENT_ID``, ``MS_CLIENT_SECRET`` and ``MS_AUTHORITY``:

* the auth-code flow in the consent dialog (:meth:`MicrosoftAuth.start_consent` /
  :meth:`MicrosoftAuth.finish_consent`; msal adds PKCE and the OpenID nonce);
* on-behalf-of (:meth:`MicrosoftAuth.on_behalf_of`) from the task pane's Nested App Authentication
  token, so sync can start right after the Salesforce login when consent already exists;
* client credentials (:class:`AppOnlyTokens`) once a tenant administrator gave admin consent;
* silent acquisition per mailbox (:class:`MailboxTokens`) from the mailbox's msal token cache, kept
  encrypted as the mailbox secret ``msal_cache`` and written back only when msal changed it.

msal and requests errors become domain errors here: a refused refresh (``invalid_grant``,
``interaction_required``) is :class:`AuthRevoked`, a refusal of our app's own credentials
(``invalid_client``, ``unauthorized_client``: an expired secret) :class:`ServiceMisconfigured`
(transient, never the user's fault), a network failure :class:`Unavailable`, and a
consent problem a :class:`SetupFailed` whose ``code`` the dialog shows. Tokens never reach a log or
an exception message (logs carry :func:`fingerprint`).
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import msal
import requests
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from backend.config import Settings
from backend.connectors.errors import AuthRevoked, ServiceMisconfigured, SetupFailed, Unavailable
from backend.net.outbound import make_session
from backend.security.crypto import fingerprint

log = logging.getLogger(__name__)

# What sync reads: mail, calendars, contacts and the user's profile (for the mailbox match).
# msal adds openid, profile and offline_access itself (and refuses them here).
GRAPH_SCOPES: tuple[str, ...] = ("Mail.Read", "Calendars.Read", "Contacts.Read", "User.Read")
# The mailbox secret holding the serialized msal token cache (encrypted by the secret store).
CACHE_SECRET = "msal_cache"  # noqa: S105 - the name of a secret, not one
# Tenant "names" that are not one tenant: client credentials and admin consent need a real one.
MULTI_TENANT = frozenset({"organizations", "common", "consumers"})
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,252}$")
_AADSTS_RE = re.compile(r"AADSTS(\d{5,6})")
# AADSTS codes that mean "an administrator must approve this app first".
ADMIN_APPROVAL_CODES = frozenset({"65001", "90094", "90095", "90099"})
# AADSTS65004: the person declined consent on the consent screen.
DECLINED_CODES = frozenset({"65004"})
# Errors from a refresh or silent call that only the person can fix.
REVOKED_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})
# Errors that refuse *our app* (expired or wrong client secret, app disabled): every mailbox would
# fail alike, and no person can fix it by reconnecting. Transient for the run, never counted.
APP_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
# ...except "the application was not found in the directory": that tenant removed the app (or its
# admin consent), which the tenant's people must redo; other tenants are unaffected.
TENANT_REMOVED_APP_CODES = frozenset({"700016"})


def authority_origin(settings: Settings) -> str:
    """``https://host[:port]`` of ``MS_AUTHORITY``."""
    parts = urlsplit(settings.MS_AUTHORITY)
    return f"{parts.scheme}://{parts.netloc}"


def default_tenant(settings: Settings) -> str:
    """The tenant segment of ``MS_AUTHORITY`` (``organizations`` for a multi-tenant app)."""
    path = urlsplit(settings.MS_AUTHORITY).path.strip("/")
    return path.split("/")[0] if path else "organizations"


def valid_tenant(tenant: str) -> bool:
    """True for a tenant id (GUID) or verified domain; refuses anything that could bend a URL."""
    return bool(_TENANT_RE.match(tenant or "")) and ".." not in tenant


def authority_for(settings: Settings, tenant: str | None = None) -> str:
    """The authority URL for ``tenant`` (or the configured one)."""
    if tenant and not valid_tenant(tenant):
        raise ValueError("not a tenant id")
    return f"{authority_origin(settings)}/{tenant or default_tenant(settings)}"


def is_microsoft_authority(settings: Settings) -> bool:
    """True when ``MS_AUTHORITY`` is one of Microsoft's own login hosts.

    Only those get msal's authority validation and instance discovery; any other host (a private
    cloud proxy, a test double) must be trusted explicitly by configuring it.
    """
    host = (urlsplit(settings.MS_AUTHORITY).hostname or "").lower()
    return host in WELL_KNOWN_AUTHORITY_HOSTS


def aadsts_code(description: str | None) -> str:
    """The AADSTS number in an Entra error description ("" when there is none)."""
    match = _AADSTS_RE.search(description or "")
    return match.group(1) if match else ""


def needs_admin_approval(error: str, description: str | None) -> bool:
    """True when Entra says an administrator must approve the app (tenant consent policy)."""
    return error == "consent_required" or aadsts_code(description) in ADMIN_APPROVAL_CODES


def admin_approval_message(settings: Settings) -> str:
    """What to tell the person to ask of their Microsoft 365 administrator."""
    return (
        "Your organisation requires an administrator to approve Sidebar Sync before you can connect "
        "your mailbox. Ask your Microsoft 365 administrator to grant admin consent to the app with "
        f"client ID {settings.MS_CLIENT_ID} for the permissions {', '.join(GRAPH_SCOPES)} "
        f"(they can do it at {settings.PUBLIC_BASE_URL}/auth/microsoft/admin-consent), then try again."
    )


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


class TokenSource(Protocol):
    """Something that hands the Graph connector an access token."""

    def access_token(self, force_refresh: bool = False) -> str:
        """A valid access token (a new one when ``force_refresh``)."""
        ...


class MicrosoftAuth:
    """The Entra ID application: msal apps for the configured (or a given) tenant."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.session = session or make_session(settings.OUTBOUND_CA_BUNDLE, settings.OUTBOUND_TIMEOUT_SECONDS)

    @property
    def redirect_uri(self) -> str:
        """The consent dialog's callback (registered as a Web redirect URI of the app)."""
        return f"{self.settings.PUBLIC_BASE_URL}/auth/microsoft/callback"

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
            return msal.ConfidentialClientApplication(
                self.settings.MS_CLIENT_ID,
                client_credential=self.settings.MS_CLIENT_SECRET,
                authority=authority_for(self.settings, tenant),
                token_cache=cache,
                http_client=self.session,
                **extra,
            )
        except requests.RequestException as exc:
            raise Unavailable(f"Microsoft sign-in could not be reached ({type(exc).__name__}).") from None
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
        try:
            result = app.acquire_token_by_auth_code_flow(dict(flow), dict(response))
        except requests.RequestException as exc:
            raise Unavailable(f"Microsoft sign-in could not be reached ({type(exc).__name__}).") from None
        except ValueError:
            # msal compares the state it generated the flow with against the answer's.
            raise SetupFailed("state_invalid", "The Microsoft sign-in answer was not for this sign-in. "
                                               "Start again from the add-in.") from None
        except RuntimeError:
            # msal's id-token nonce check: the id token was minted for another sign-in request.
            raise SetupFailed("nonce_mismatch", "Microsoft's answer did not match this sign-in (nonce). "
                                                "Start again from the add-in.") from None
        if "error" in result:
            raise self._consent_error(str(result.get("error", "")), str(result.get("error_description", "")))
        return self._grant(app, cache, result)

    def _consent_error(self, error: str, description: str) -> SetupFailed:
        code = aadsts_code(description)
        if needs_admin_approval(error, description):
            return SetupFailed("admin_approval_required", admin_approval_message(self.settings))
        if error == "access_denied" or code in DECLINED_CODES:
            return SetupFailed("consent_denied", "You did not accept the permissions, so Sidebar Sync cannot read "
                                                 "your mailbox. Connect again and choose Accept to start sync.")
        if error == "invalid_grant":
            return SetupFailed("code_rejected", "Microsoft refused the sign-in code (it was used, expired or issued "
                                                "to another app). Start again from the add-in.")
        if error in {"invalid_client", "unauthorized_client"}:
            return SetupFailed("app_misconfigured", "Microsoft refused this server's app credentials. Contact your "
                                                    "administrator.")
        suffix = f" (AADSTS{code})" if code else ""
        return SetupFailed("microsoft_error", f"Microsoft did not complete the sign-in{suffix}. Try again.")

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

    # --- on-behalf-of ---------------------------------------------------------------------------

    def on_behalf_of(self, assertion: str, tenant: str) -> Grant:
        """Trade the pane's NAA token for Graph access; SetupFailed("consent_required") when not consented."""
        cache = msal.SerializableTokenCache()
        app = self.build_app(tenant if tenant and valid_tenant(tenant) else None, cache)
        try:
            result = app.acquire_token_on_behalf_of(assertion, list(GRAPH_SCOPES))
        except requests.RequestException as exc:
            raise Unavailable(f"Microsoft sign-in could not be reached ({type(exc).__name__}).") from None
        if "error" in result:
            error = str(result.get("error", ""))
            description = str(result.get("error_description", ""))
            suberror = str(result.get("suberror", ""))
            if error in {"interaction_required", "consent_required"} or suberror == "consent_required" or \
                    aadsts_code(description) in ADMIN_APPROVAL_CODES:
                raise SetupFailed("consent_required", "Connect Microsoft 365 once to allow Sidebar Sync to read "
                                                      "your mailbox.")
            if error in {"temporarily_unavailable", "server_error"}:
                raise Unavailable("Microsoft sign-in is temporarily unavailable.")
            code = aadsts_code(description)
            raise SetupFailed("obo_refused", "Microsoft refused to extend the add-in's sign-in to your mailbox"
                                             + (f" (AADSTS{code})." if code else "."))
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


def _classify_silent(result: dict[str, Any] | None, who: str) -> str:
    """The access token of a silent/client result, or the domain error it stands for."""
    if result is None:
        raise AuthRevoked("There is no usable Microsoft sign-in for this mailbox. Connect Microsoft 365 again.")
    if "error" in result:
        error = str(result.get("error", ""))
        code = aadsts_code(str(result.get("error_description", "")))
        suffix = f" (AADSTS{code})" if code else ""
        if error in APP_ERRORS and code not in TENANT_REMOVED_APP_CODES:
            log.error("microsoft refused this server's app credentials (check MS_CLIENT_ID/MS_CLIENT_SECRET) "
                      "%s error=%s%s", who, error, suffix)
            raise ServiceMisconfigured(f"Microsoft refused this server's app credentials ({error}{suffix}); "
                                       "an administrator must renew them. Sync continues once they do.")
        if error in REVOKED_ERRORS or error in APP_ERRORS:
            log.warning("microsoft token refused %s error=%s%s", who, error, suffix)
            raise AuthRevoked(f"Microsoft 365 no longer accepts the mailbox connection ({error}{suffix}). "
                              "Connect Microsoft 365 again.")
        raise Unavailable(f"Microsoft sign-in failed for now ({error}{suffix}).")
    token = result.get("access_token")
    if not token:
        raise Unavailable("Microsoft sign-in returned no access token.")
    return str(token)


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
            self._app = self.auth.build_app(tenant if tenant and valid_tenant(tenant) else None, cache)
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
                result = app.acquire_token_silent_with_error(list(GRAPH_SCOPES), account,
                                                             force_refresh=force_refresh)
            except requests.RequestException as exc:
                raise Unavailable(f"Microsoft sign-in could not be reached ({type(exc).__name__}).") from None
            finally:
                self._save()
            return _classify_silent(result, f"account={fingerprint(str(wanted or ''))}")

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
            try:
                result = self._app.acquire_token_for_client([f"{self.auth.settings.GRAPH_URL}/.default"])
            except requests.RequestException as exc:
                raise Unavailable(f"Microsoft sign-in could not be reached ({type(exc).__name__}).") from None
            return _classify_silent(result, f"tenant={self.tenant}")


def check_app_only(auth: MicrosoftAuth, tenant: str) -> None:
    """Prove a tenant's admin consent by obtaining an application token (AuthRevoked when refused)."""
    AppOnlyTokens(auth, tenant).access_token()
