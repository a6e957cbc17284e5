"""Salesforce OAuth 2.0: the web-server flow with PKCE, refresh, revoke and userinfo.

simple-salesforce has no authorization-code flow, so this module speaks the OAuth endpoints with
``requests`` and hands access tokens to the CRM connector. Vendor errors become domain errors
here: a refused refresh token is :class:`AuthRevoked`, anything else that fails is
:class:`Unavailable`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from backend.connectors.common import OAuthApp
from backend.connectors.salesforce.hosts import LoginHostRefused, check_salesforce_url
from backend.errors import AuthRevoked, ServiceMisconfigured, Unavailable
from backend.security.crypto import fingerprint

log = logging.getLogger(__name__)


class TokenExpired(Exception):
    """The access token was refused; refresh once and retry."""


@dataclass(frozen=True)
class TokenSet:
    """What the token endpoint returned."""

    access_token: str
    instance_url: str
    identity_url: str
    refresh_token: str | None = None


@dataclass(frozen=True)
class Identity:
    """The Salesforce user behind a token (from userinfo)."""

    org_id: str
    user_id: str
    username: str
    email: str
    name: str


class SalesforceOAuth(OAuthApp):
    """The OAuth endpoints of a Salesforce login host."""

    # Registered in the connected app.
    callback_path = "/auth/salesforce/callback"

    def authorize_url(self, login_url: str, state: str, code_challenge: str, force_login: bool = False) -> str:
        """Where the dialog sends the person to log in."""
        params = {
            "response_type": "code",
            "client_id": self.settings.SALESFORCE_CLIENT_ID,
            "redirect_uri": self.redirect_uri,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            "scope": "api refresh_token id",
        }
        if force_login:
            params["prompt"] = "login consent"
        return f"{login_url}/services/oauth2/authorize?{urlencode(params)}"

    def _token_call(self, login_url: str, form: dict[str, str]) -> dict[str, Any]:
        form = {
            **form,
            "client_id": self.settings.SALESFORCE_CLIENT_ID,
            "client_secret": self.settings.SALESFORCE_CLIENT_SECRET,
        }
        try:
            resp = self.session.post(f"{login_url}/services/oauth2/token", data=form)
        except requests.RequestException as exc:
            raise Unavailable(f"Salesforce could not be reached ({type(exc).__name__}).") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            return body
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        description = str(body.get("error_description", error))[:200] if isinstance(body, dict) else ""
        if resp.status_code in (400, 401) and error in {"invalid_client", "unauthorized_client"}:
            # Our connected app's credentials were refused (expired secret, app removed): no user can
            # fix that by logging in again, so it must not count against anyone's sync.
            log.error("salesforce refused the connected app: %s", error)
            raise ServiceMisconfigured(f"Salesforce refused this server's app credentials ({error}).")
        if resp.status_code in (400, 401) and error in {"invalid_grant", "inactive_user", "inactive_org"}:
            raise AuthRevoked(f"Salesforce refused the login ({error}: {description}).")
        raise Unavailable(f"Salesforce's token endpoint answered {resp.status_code}.")

    def exchange_code(self, login_url: str, code: str, code_verifier: str) -> TokenSet:
        """Trade an authorization code (with its PKCE verifier) for tokens."""
        body = self._token_call(
            login_url,
            {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
             "code_verifier": code_verifier},
        )
        return self._checked(token_set(body))

    def _checked(self, tokens: TokenSet) -> TokenSet:
        # The instance receives the access token and answers who the user is: it must be Salesforce.
        try:
            check_salesforce_url(self.settings, tokens.instance_url)
        except LoginHostRefused as exc:
            raise AuthRevoked(f"Salesforce answered with an instance outside Salesforce ({exc}).") from None
        return tokens

    def refresh(self, login_url: str, refresh_token: str) -> TokenSet:
        """A new access token from the refresh token (Salesforce issues no new refresh token)."""
        body = self._token_call(login_url, {"grant_type": "refresh_token", "refresh_token": refresh_token})
        log.info("salesforce token refreshed refresh=%s", fingerprint(refresh_token))
        return self._checked(token_set(body))

    def revoke(self, login_url: str, token: str) -> None:
        """Revoke a token (logout); failures are ignored: the token is deleted on our side anyway."""
        try:
            self.session.post(f"{login_url}/services/oauth2/revoke", data={"token": token})
        except requests.RequestException:
            log.warning("salesforce revoke failed token=%s", fingerprint(token))

    def userinfo(self, instance_url: str, access_token: str) -> Identity:
        """Who the access token belongs to; TokenExpired when it is refused."""
        try:
            resp = self.session.get(
                f"{instance_url}/services/oauth2/userinfo",
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            )
        except requests.RequestException as exc:
            raise Unavailable(f"Salesforce could not be reached ({type(exc).__name__}).") from None
        if resp.status_code in (401, 403):
            raise TokenExpired()
        if resp.status_code != 200:
            raise Unavailable(f"Salesforce userinfo answered {resp.status_code}.")
        try:
            data = resp.json()
            return Identity(
                org_id=str(data["organization_id"]),
                user_id=str(data["user_id"]),
                username=str(data.get("preferred_username", "")),
                email=str(data.get("email", "")),
                name=str(data.get("name", "")),
            )
        except (ValueError, KeyError, TypeError):
            raise Unavailable("Salesforce userinfo answered something unexpected.") from None


def token_set(body: dict[str, Any]) -> TokenSet:
    instance = str(body.get("instance_url", ""))
    if urlsplit(instance).scheme != "https":
        raise Unavailable("Salesforce returned an instance URL that is not https.")
    return TokenSet(
        access_token=str(body["access_token"]),
        instance_url=instance.rstrip("/"),
        identity_url=str(body.get("id", "")),
        refresh_token=str(body["refresh_token"]) if body.get("refresh_token") else None,
    )
