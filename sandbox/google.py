"""A fake Google OAuth 2.0 server at the wire protocol, and the one fake Google app it is part of.

Served on loopback https; the product reaches it only through ``GOOGLE_AUTH_URL``,
``GOOGLE_TOKEN_URL`` and ``GOOGLE_REVOKE_URL``. The layout follows Google's:

* ``GET /o/oauth2/v2/auth``: the web-server flow's consent page (or automatic answers per
  :attr:`FakeGoogleState.authorize_mode`); ``POST /o/oauth2/v2/auth/approve`` is the page's form.
  ``client_id``, ``redirect_uri``, ``response_type=code`` and PKCE ``S256`` are required, as for a
  Web client;
* ``POST /token``: ``authorization_code`` (PKCE checked, single use, bound to its client and
  redirect URI; a refresh token only with ``access_type=offline``, and again only with
  ``prompt=consent``) and ``refresh_token``; errors as Google words them (``invalid_grant`` ...);
* ``POST /token`` with ``urn:ietf:params:oauth:grant-type:jwt-bearer``: a service account's signed
  assertion, with ``sub`` for domain-wide delegation (:mod:`sandbox.google_delegation`);
* ``POST /revoke``: revokes an access token, or a refresh token with the whole grant (every refresh
  token of that account and client, as Google removes the app's access).

Access tokens are opaque; :mod:`sandbox.gmail` and :mod:`sandbox.google_calendar` look them up
here. :func:`create_app` serves OAuth, Gmail and Calendar from one host (``/gmail/v1``,
``/batch/gmail/v1``, ``/calendar/v3``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from flask import Flask, Response, jsonify, redirect, request

from sandbox.google_delegation import JWT_BEARER, UNKNOWN_USER, Delegation, DelegationRefused
from sandbox.microsoft import SigningKey, new_key

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
GMAIL_METADATA = "https://www.googleapis.com/auth/gmail.metadata"
CALENDAR_EVENTS_READONLY = "https://www.googleapis.com/auth/calendar.events.readonly"
UNVERIFIED_DESCRIPTION = ("Sidebar Sync has not completed the Google verification process. The app is currently "
                          "being tested, and can only be accessed by developer-approved testers.")


@dataclass
class GoogleUser:
    """A Google account (Gmail or Google Workspace)."""

    email: str
    sub: str
    display_name: str
    aliases: list[str] = field(default_factory=list)
    # Scopes this person granted our client earlier (include_granted_scopes adds them back).
    granted: set[str] = field(default_factory=set)
    # False: Gmail is turned off for the person's organisational unit (the API answers failedPrecondition).
    gmail_enabled: bool = True


@dataclass
class TokenInfo:
    """What an access token stands for (Gmail and Calendar look it up here)."""

    email: str
    client_id: str
    scopes: frozenset[str]
    expires: float


@dataclass
class _Code:
    user: GoogleUser
    client_id: str
    redirect_uri: str
    challenge: str
    method: str
    scopes: list[str]
    offline: bool
    issued: float


@dataclass
class _Refresh:
    user: GoogleUser
    client_id: str
    scopes: list[str]


@dataclass
class FakeGoogleState:
    """Clients, accounts and tokens of the fake Google OAuth server; tests change it directly."""

    client_id: str = "1234567890-sidebar.apps.googleusercontent.com"
    client_secret: str = "google-test-secret"
    base_url: str = ""
    key: SigningKey = field(default_factory=lambda: new_key("google-key-1"))
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: dict[str, GoogleUser] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)
    refresh_tokens: dict[str, _Refresh] = field(default_factory=dict)
    access_tokens: dict[str, TokenInfo] = field(default_factory=dict)
    # "form": the account chooser and consent page; "approve": ``auto_user`` (or login_hint)
    # accepts; "deny": the person presses Cancel; "unverified": Google blocks the unverified app.
    authorize_mode: str = "form"
    auto_user: str = ""
    # Scopes the person leaves unticked on the (granular) consent screen.
    withheld_scopes: set[str] = field(default_factory=set)
    # False: no refresh token even with access_type=offline (as when prompt=consent is missing).
    issue_refresh_tokens: bool = True
    access_token_lifetime: int = 3599
    token_requests: list[str] = field(default_factory=list)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    # Service accounts, their keys and the Workspace admin's domain-wide delegation entries.
    delegation: Delegation = field(default_factory=Delegation)

    def add_service_account(self, client_email: str, client_id: str, public_pem: bytes, key_id: str = "") -> str:
        """Register a service account's key (see :class:`Delegation`); returns the key id."""
        return self.delegation.add_service_account(client_email, client_id, public_pem, key_id)

    def authorise_delegation(self, client_id: str, scopes: list[str] | tuple[str, ...] | set[str]) -> None:
        """The Workspace admin authorises ``scopes`` for ``client_id`` (an empty list removes the entry)."""
        self.delegation.authorise(client_id, scopes)

    def revoke_key(self, key_id_or_email: str) -> None:
        """Delete a service account key (or all of one account's keys)."""
        self.delegation.revoke_key(key_id_or_email)

    def add_user(self, email: str, *, aliases: list[str] | tuple[str, ...] = (),
                 display_name: str | None = None) -> GoogleUser:
        """Add a Google account."""
        sub = str(int(hashlib.sha256(email.lower().encode()).hexdigest()[:15], 16))
        user = GoogleUser(email=email.lower(), sub=sub,
                          display_name=display_name or email.split("@")[0].title(),
                          aliases=[a.lower() for a in aliases])
        with self.lock:
            self.users[user.email] = user
        return user

    def find_user(self, email: str) -> GoogleUser | None:
        """An account by its address (primary only, as Google's sign-in takes it)."""
        with self.lock:
            return self.users.get(email.strip().lower())

    def token_info(self, authorization: str | None) -> TokenInfo | None:
        """What an ``Authorization: Bearer`` header stands for, or None (unknown, revoked or expired)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        with self.lock:
            info = self.access_tokens.get(token.strip())
        if info is None or info.expires < time.time():
            return None
        return info

    def revoke_user_tokens(self, email: str) -> None:
        """Revoke every refresh and access token of an account (password change, removed access)."""
        key = email.lower()
        with self.lock:
            for token, grant in list(self.refresh_tokens.items()):
                if grant.user.email == key:
                    del self.refresh_tokens[token]
            for token, info in list(self.access_tokens.items()):
                if info.email == key:
                    del self.access_tokens[token]

    def expire_access_tokens(self) -> None:
        """Make every access token invalid (the APIs answer 401; a refresh gets a new one)."""
        with self.lock:
            self.access_tokens.clear()

    def grant_offline(self, email: str, scopes: list[str] | None = None) -> str:
        """A refresh token for an account as a completed consent would leave it (for harnesses)."""
        user = self.find_user(email)
        assert user is not None, email
        token = "1//fake-rt-" + secrets.token_urlsafe(24)
        with self.lock:
            self.refresh_tokens[token] = _Refresh(user, self.client_id,
                                                  scopes or ["openid", "email", GMAIL_READONLY,
                                                             CALENDAR_EVENTS_READONLY])
        return token

    def _access_token(self, user: GoogleUser, client_id: str, scopes: list[str]) -> str:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self.lock:
            self.access_tokens[token] = TokenInfo(user.email, client_id, frozenset(scopes),
                                                  time.time() + self.access_token_lifetime)
        return token

    def _id_token(self, user: GoogleUser, client_id: str) -> str:
        now = int(time.time())
        claims = {"iss": "https://accounts.google.com", "aud": client_id, "azp": client_id, "sub": user.sub,
                  "email": user.email, "email_verified": True, "iat": now, "exp": now + 3600}
        return jwt.encode(claims, self.key.private, algorithm="RS256", headers={"kid": self.key.kid})

    def tokens_for(self, user: GoogleUser, client_id: str, scopes: list[str], refresh: bool) -> dict[str, Any]:
        """A token endpoint answer for ``user``."""
        body: dict[str, Any] = {
            "access_token": self._access_token(user, client_id, scopes),
            "expires_in": self.access_token_lifetime,
            "scope": " ".join(sorted(scopes)),
            "token_type": "Bearer",
        }
        if refresh:
            token = "1//fake-rt-" + secrets.token_urlsafe(24)
            with self.lock:
                self.refresh_tokens[token] = _Refresh(user, client_id, list(scopes))
            body["refresh_token"] = token
        if "openid" in scopes:
            body["id_token"] = self._id_token(user, client_id)
        return body


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _error(error: str, description: str, status: int = 400) -> Response:
    resp = jsonify({"error": error, "error_description": description})
    resp.status_code = status
    return resp


CONSENT_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Sign in - Google Accounts (fake)</title></head><body><h1>Google (fake)</h1>
<p>Sidebar Sync wants to read your email messages and settings and view events on your calendars.</p>
<form method="post" action="/o/oauth2/v2/auth/approve">
<input type="hidden" name="grant" value="{grant}">
<label>Email <input name="username" id="username" value="{username}"></label>
<button type="submit" id="accept" name="action" value="accept">Allow</button>
<button type="submit" id="cancel" name="action" value="deny">Cancel</button>
</form>{error}</body></html>"""


def register_oauth(app: Flask, state: FakeGoogleState) -> None:
    """Add the OAuth endpoints to a fake Google app."""
    pending: dict[str, dict[str, str]] = {}

    def back(params: dict[str, str], **answer: str) -> Response:
        answer = {k: v for k, v in answer.items() if v}
        if params.get("state"):
            answer["state"] = params["state"]
        return redirect(f"{params['redirect_uri']}?{urlencode(answer)}", code=302)

    def decide(params: dict[str, str], username: str, action: str) -> Response:
        if action == "deny":
            return back(params, error="access_denied")
        if action == "unverified":
            return back(params, error="access_denied", error_description=UNVERIFIED_DESCRIPTION)
        user = state.find_user(username)
        if user is None:
            page = CONSENT_PAGE.format(grant=params["_grant"], username=html.escape(username),
                                       error="<p role='alert'>Couldn't find your Google Account.</p>")
            return Response(page, mimetype="text/html")
        asked = set(params.get("scope", "").split()) - state.withheld_scopes
        with state.lock:
            if params.get("include_granted_scopes") == "true":
                asked |= user.granted
            user.granted |= asked
        code = "4/fake-" + secrets.token_urlsafe(18)
        with state.lock:
            state.codes[code] = _Code(user, params["client_id"], params["redirect_uri"],
                                      params.get("code_challenge", ""), params.get("code_challenge_method", ""),
                                      sorted(asked), params.get("access_type") == "offline", time.time())
        return back(params, code=code, scope=" ".join(sorted(asked)))

    @app.get("/o/oauth2/v2/auth")
    def authorize() -> Any:
        params = dict(request.args)
        state.authorize_requests.append(params)
        if params.get("client_id") != state.client_id:
            return Response("Error 401: invalid_client. The OAuth client was not found.", status=401)
        if params.get("response_type") != "code" or not params.get("redirect_uri") or not params.get("scope"):
            return Response("Error 400: invalid_request. Required parameter is missing.", status=400)
        if params.get("code_challenge") and params.get("code_challenge_method") != "S256":
            return Response("Error 400: invalid_request. Invalid code_challenge_method.", status=400)
        grant = secrets.token_urlsafe(12)
        params["_grant"] = grant
        if state.authorize_mode in ("approve", "deny", "unverified"):
            action = {"approve": "accept"}.get(state.authorize_mode, state.authorize_mode)
            return decide(params, state.auto_user or params.get("login_hint", ""), action)
        pending[grant] = params
        return Response(CONSENT_PAGE.format(grant=grant, username=html.escape(params.get("login_hint", "")),
                                            error=""), mimetype="text/html")

    @app.post("/o/oauth2/v2/auth/approve")
    def approve() -> Any:
        params = pending.pop(request.form.get("grant", ""), None)
        if params is None:
            return Response("Error 400: the sign-in request expired.", status=400)
        response = decide(params, request.form.get("username", ""), request.form.get("action", "accept"))
        if response.status_code == 200:
            pending[params["_grant"]] = params  # the page again (unknown account)
        return response

    def delegated(assertion: str) -> Response:
        # A service account needs no client secret: its signed assertion is the credential.
        try:
            verified = state.delegation.verify(assertion, f"{state.base_url}/token")
        except DelegationRefused as exc:
            return _error(exc.error, exc.description, exc.status)
        if not verified.subject or verified.subject == verified.client_email:
            user = GoogleUser(email=verified.client_email, sub=verified.client_id, display_name="")
        else:
            # Google signs in an alias address (or a nickname) as the account it belongs to.
            primary = state.delegation.nicknames.get(verified.subject, verified.subject)
            with state.lock:
                user_ = state.users.get(primary) or next(
                    (u for u in state.users.values() if primary in u.aliases), None)
            if user_ is None or not state.delegation.in_domain(user_.email):
                return _error("invalid_grant", UNKNOWN_USER)
            user = user_
        answer = state.tokens_for(user, verified.client_id, list(verified.scopes), refresh=False)
        return jsonify({k: answer[k] for k in ("access_token", "expires_in", "token_type")})

    @app.post("/token")
    def token() -> Any:
        form = request.form
        grant_type = form.get("grant_type", "")
        state.token_requests.append(grant_type)
        if grant_type == JWT_BEARER:
            return delegated(form.get("assertion", ""))
        client_id = form.get("client_id", "")
        if client_id != state.client_id or form.get("client_secret") != state.client_secret:
            return _error("invalid_client", "The OAuth client was not found.", 401)
        if grant_type == "authorization_code":
            with state.lock:
                code = state.codes.pop(form.get("code", ""), None)
            if code is None or time.time() - code.issued > 600:
                return _error("invalid_grant", "Malformed auth code.")
            if code.client_id != client_id or code.redirect_uri != form.get("redirect_uri", ""):
                return _error("redirect_uri_mismatch", "Bad Request")
            if code.challenge and (code.method != "S256" or _s256(form.get("code_verifier", "")) != code.challenge):
                return _error("invalid_grant", "Invalid code verifier.")
            refresh = code.offline and state.issue_refresh_tokens
            return jsonify(state.tokens_for(code.user, client_id, code.scopes, refresh))
        if grant_type == "refresh_token":
            with state.lock:
                grant = state.refresh_tokens.get(form.get("refresh_token", ""))
            if grant is None or grant.client_id != client_id:
                return _error("invalid_grant", "Token has been expired or revoked.")
            answer = state.tokens_for(grant.user, client_id, grant.scopes, refresh=False)
            answer.pop("id_token", None)
            return jsonify(answer)
        return _error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    @app.post("/revoke")
    def revoke() -> Any:
        token_ = request.form.get("token") or request.args.get("token", "")
        with state.lock:
            grant = state.refresh_tokens.pop(token_, None)
            known = grant is not None or state.access_tokens.pop(token_, None) is not None
            if grant is not None:
                # Google removes the app's access to the account: every refresh token of that user
                # and client goes with the one revoked (an older one a product kept included).
                for other, held in list(state.refresh_tokens.items()):
                    if held.user.email == grant.user.email and held.client_id == grant.client_id:
                        del state.refresh_tokens[other]
            state.revoked.append(token_)
        if not known:
            return _error("invalid_token", "Token expired or revoked")
        return Response("{}", mimetype="application/json")


def create_app(google: FakeGoogleState, gmail: Any = None, calendar: Any = None) -> Flask:
    """One fake Google host: OAuth, and Gmail and Calendar when their states are given."""
    app = Flask("fake_google")
    register_oauth(app, google)
    if gmail is not None:
        from sandbox.gmail import register_gmail

        register_gmail(app, gmail)
    if calendar is not None:
        from sandbox.google_calendar import register_calendar

        register_calendar(app, calendar)
    return app
