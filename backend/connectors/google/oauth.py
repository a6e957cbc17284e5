"""The Google OAuth client: the consent dialog's web-server flow (state + PKCE S256), and revocation.

Google's OAuth 2.0 for web-server applications, spoken over the project's outbound session:

* :meth:`GoogleAuth.authorization_url` sends the person to ``GOOGLE_AUTH_URL`` with our signed
  ``state``, a PKCE ``S256`` challenge (the verifier stays sealed server-side), ``access_type=offline``
  and ``prompt=consent`` (so a refresh token comes back every time), ``include_granted_scopes=true``
  and ``login_hint``;
* :meth:`GoogleAuth.redeem` trades the code at ``GOOGLE_TOKEN_URL`` and refuses what sync could not
  run on (no refresh token, a scope left unticked, ``gmail.metadata`` granted);
* :func:`consent_error` words the callback's ``error`` for the person.

Google's answers become :class:`~backend.errors.SetupFailed` / :class:`~backend.errors.Unavailable`
here; the refresh token leaves this module only inside :class:`GoogleGrant`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests

from backend.connectors.common import OAuthApp
from backend.errors import SetupFailed, Unavailable

log = logging.getLogger(__name__)

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
CALENDAR_EVENTS_READONLY = "https://www.googleapis.com/auth/calendar.events.readonly"
# Never asked for: once a token holds it, Gmail refuses ``q`` and ``format=full`` whatever else it holds.
GMAIL_METADATA = "https://www.googleapis.com/auth/gmail.metadata"
SCOPES: tuple[str, ...] = ("openid", "email", GMAIL_READONLY, CALENDAR_EVENTS_READONLY)
REQUIRED_SCOPES = frozenset({GMAIL_READONLY, CALENDAR_EVENTS_READONLY})
_TRY_AGAIN = "Start again from the add-in."


@dataclass(frozen=True)
class GoogleGrant:
    """What a completed consent gives: a fresh access token, the refresh token (a secret), the scopes."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    scopes: frozenset[str]

    def connection(self, via: str) -> dict[str, Any]:
        """The non-secret connection details stored with the sync mailbox."""
        return {"scopes": sorted(self.scopes), "via": via}


def consent_error(error: str, description: str = "") -> SetupFailed:
    """The callback's ``error`` (the person's answer on Google's screen) as a sentence they understand."""
    if error == "access_denied" and "verif" in description.lower():
        return SetupFailed("app_unverified", "Google blocked the sign-in because this server's Google app is not "
                                             "verified yet. Ask your administrator to publish and verify the "
                                             "app in Google Cloud, then try again.")
    if error == "access_denied":
        return SetupFailed("consent_denied", "You did not allow Sidebar Sync to read your Gmail and calendar, so "
                                             "sync was not turned on. Press Connect Gmail and choose Allow to "
                                             "try again.")
    if error in ("admin_policy_enforced", "org_internal"):
        return SetupFailed("admin_policy", "Your Google Workspace administrator does not allow this app. Ask them "
                                           "to trust Sidebar Sync in the Admin console (API controls).")
    return SetupFailed("consent_failed", f"Google did not complete the sign-in ({error[:60] or 'no answer'}). "
                                         f"{_TRY_AGAIN}")


class GoogleAuth(OAuthApp):
    """The Google OAuth client built from ``GOOGLE_CLIENT_ID`` / ``GOOGLE_CLIENT_SECRET`` and the endpoints."""

    # Registered as an authorised redirect URI of the Web client.
    callback_path = "/auth/google/callback"

    def authorization_url(self, state: str, challenge: str, login_hint: str = "") -> str:
        """Where the dialog sends the person: Google's consent screen for our scopes."""
        params = {
            "client_id": self.settings.GOOGLE_CLIENT_ID,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": " ".join(SCOPES),
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "access_type": "offline",
            # Without it Google hands out a refresh token only on the very first consent.
            "prompt": "consent",
            "include_granted_scopes": "true",
        }
        if login_hint:
            params["login_hint"] = login_hint
        return f"{self.settings.GOOGLE_AUTH_URL}?{urlencode(params)}"

    def _post(self, url: str, data: dict[str, str]) -> requests.Response:
        try:
            return self.session.post(url, data=data, headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise Unavailable(f"Google could not be reached ({type(exc).__name__}).") from None

    def redeem(self, code: str, verifier: str) -> GoogleGrant:
        """Trade the callback's code (with the PKCE verifier) for tokens; SetupFailed says what is wrong."""
        resp = self._post(self.settings.GOOGLE_TOKEN_URL, {
            "grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
            "client_id": self.settings.GOOGLE_CLIENT_ID, "client_secret": self.settings.GOOGLE_CLIENT_SECRET,
            "code_verifier": verifier,
        })
        try:
            body: Any = resp.json()
        except ValueError:
            body = {}
        if resp.status_code >= 500 or not isinstance(body, dict):
            raise Unavailable(f"Google's token endpoint failed ({resp.status_code}).")
        if resp.status_code != 200:
            error = str(body.get("error", ""))[:60]
            log.info("google code redemption refused status=%s error=%s", resp.status_code, error)
            if error in ("invalid_client", "unauthorized_client"):
                raise SetupFailed("google_misconfigured", "This server's Google sign-in is misconfigured. Contact "
                                                          "your administrator.")
            raise SetupFailed("code_rejected", f"Google did not accept the sign-in answer. {_TRY_AGAIN}")
        grant = GoogleGrant(access_token=str(body.get("access_token", "")),
                            refresh_token=str(body.get("refresh_token", "")),
                            scopes=frozenset(str(body.get("scope", "")).split()))
        self._check(grant)
        return grant

    def _check(self, grant: GoogleGrant) -> None:
        """Refuse a grant sync could not run on (revoking it, since it will not be stored)."""
        problem: SetupFailed | None = None
        if not grant.access_token:
            problem = SetupFailed("code_rejected", f"Google did not return an access token. {_TRY_AGAIN}")
        elif GMAIL_METADATA in grant.scopes:
            problem = SetupFailed("metadata_scope", "Your Google account gave this app metadata-only Gmail access "
                                                    "earlier, which blocks reading mail. Remove Sidebar Sync under "
                                                    "Google Account > Security > Third-party access, then connect "
                                                    "again.")
        elif not REQUIRED_SCOPES <= grant.scopes:
            problem = SetupFailed("scopes_missing", "Sidebar Sync needs to read your Gmail and view your calendar "
                                                    "events. Connect Gmail again and tick both boxes on Google's "
                                                    "screen.")
        elif not grant.refresh_token:
            problem = SetupFailed("refresh_token_missing", "Google did not grant offline access, so sync could not "
                                                           "run in the background. Remove Sidebar Sync under Google "
                                                           "Account > Security > Third-party access, then connect "
                                                           "again.")
        if problem is not None:
            self.revoke(grant.refresh_token or grant.access_token)
            raise problem

    def revoke(self, token: str) -> bool:
        """Revoke a token we will not keep (best effort: True when Google confirmed)."""
        if not token:
            return False
        try:
            resp = self._post(self.settings.GOOGLE_REVOKE_URL, {"token": token})
        except Unavailable:
            log.warning("google token revocation failed: unreachable")
            return False
        return resp.status_code == 200
