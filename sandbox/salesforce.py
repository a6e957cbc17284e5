"""A fake Salesforce at the wire protocol: OAuth 2.0 web-server flow with PKCE, refresh, userinfo.

The same origin plays the login host and the instance (``instance_url``), as a My Domain does.
The REST data API (query, composite, sObject collections, describe, limits) is registered on the
same app by :mod:`sandbox.salesforce_rest`.
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
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Flask, Response, jsonify, request

API_VERSION = "62.0"


@dataclass
class SfUser:
    """A user of the fake org."""

    username: str
    password: str
    user_id: str
    org_id: str
    email: str
    name: str
    is_admin: bool = False
    is_active: bool = True


@dataclass
class _Grant:
    user: SfUser
    client_id: str
    redirect_uri: str
    code_challenge: str
    issued: float


@dataclass
class FakeSalesforceState:
    """Everything the fake knows; tests inspect and change it directly."""

    client_id: str = "sf-test-client"
    client_secret: str = "sf-test-secret"
    users: dict[str, SfUser] = field(default_factory=dict)
    codes: dict[str, _Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, SfUser] = field(default_factory=dict)
    access_tokens: dict[str, SfUser] = field(default_factory=dict)
    revoked_refresh: set[str] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock)
    base_url: str = ""
    # Counters tests assert on.
    token_requests: list[str] = field(default_factory=list)
    # Permission sets assigned beyond the profile, by username (e.g. "Sidebar_Sync_Admin").
    permission_sets: dict[str, list[str]] = field(default_factory=dict)
    # The JWT bearer flow: PEM certificates (or public keys) uploaded to the connected app, and the
    # usernames an administrator pre-authorised ("Admin approved users are pre-authorized").
    jwt_certificates: list[str] = field(default_factory=list)
    preauthorized: set[str] = field(default_factory=set)

    def user_rows(self) -> list[dict[str, Any]]:
        """User rows as SOQL sees them (Id, Username, Email, Name, IsActive)."""
        with self.lock:
            return [{"Id": u.user_id, "Username": u.username, "Email": u.email, "Name": u.name,
                     "IsActive": u.is_active} for u in self.users.values()]

    def permission_assignments(self) -> list[dict[str, Any]]:
        """PermissionSetAssignment rows: each user's profile (Modify All Data when is_admin), then the rest."""
        rows: list[dict[str, Any]] = []
        with self.lock:
            for user in self.users.values():
                rows.append({"Id": f"0Pa{user.user_id[3:]}", "AssigneeId": user.user_id, "PermissionSet": {
                    "Name": f"X00e{user.user_id[3:12]}", "PermissionsModifyAllData": user.is_admin,
                    "IsOwnedByProfile": True}})
                for n, name in enumerate(self.permission_sets.get(user.username, [])):
                    rows.append({"Id": f"0Pb{n}{user.user_id[4:]}", "AssigneeId": user.user_id, "PermissionSet": {
                        "Name": name, "PermissionsModifyAllData": False, "IsOwnedByProfile": False}})
        return rows

    # The default org id is a real-looking one: its 18-character checksum holds (`flask org show` takes it).
    def add_user(self, username: str, password: str = "pw", *, org_id: str = "00D000000000001EAA",
                 user_id: str | None = None, email: str | None = None, name: str | None = None,
                 is_admin: bool = False) -> SfUser:
        """Add a user who can log in."""
        uid = user_id or "005" + hashlib.sha1(username.encode()).hexdigest()[:12].upper() + "AAA"
        user = SfUser(username, password, uid, org_id, email or username, name or username.split("@")[0], is_admin)
        with self.lock:
            self.users[username] = user
        return user

    def issue_access_token(self, user: SfUser) -> str:
        """A new access token for ``user``."""
        token = "00D!" + secrets.token_urlsafe(24)
        with self.lock:
            self.access_tokens[token] = user
        return token

    def expire_access_tokens(self) -> None:
        """Make every access token invalid (as a session timeout does)."""
        with self.lock:
            self.access_tokens.clear()

    def revoke_refresh_tokens(self, username: str | None = None) -> None:
        """Revoke refresh tokens (all, or one user's), as an admin revoking the connected app does."""
        with self.lock:
            for token, user in list(self.refresh_tokens.items()):
                if username is None or user.username == username:
                    self.revoked_refresh.add(token)
                    del self.refresh_tokens[token]
            for token, user in list(self.access_tokens.items()):
                if username is None or user.username == username:
                    del self.access_tokens[token]

    def user_for_bearer(self, header: str | None) -> SfUser | None:
        """The user of an ``Authorization: Bearer`` (or ``OAuth``) header, or None."""
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in {"bearer", "oauth"}:
            return None
        with self.lock:
            return self.access_tokens.get(token.strip())


JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def check_assertion(state: FakeSalesforceState, assertion: str) -> dict[str, Any] | Response:
    """The claims of a JWT bearer assertion, or the error Salesforce answers (signature, iss, aud, exp)."""
    for pem in state.jwt_certificates:
        key = _public_key(pem)
        try:
            claims: dict[str, Any] = jwt.decode(assertion, key, algorithms=["RS256"], options={
                "verify_aud": False, "require": ["iss", "sub", "aud", "exp"]})
        except jwt.ExpiredSignatureError:
            return _oauth_error("invalid_grant", "expired authorization code")
        except jwt.PyJWTError:
            continue
        break
    else:
        return _oauth_error("invalid_grant", "invalid assertion")
    if claims.get("iss") != state.client_id:
        return _oauth_error("invalid_client_id", "client identifier invalid")
    if claims.get("aud") != state.base_url:
        return _oauth_error("invalid_grant", "audience is invalid")
    if float(claims["exp"]) - time.time() > 180 + 5:
        return _oauth_error("invalid_grant", "expiration is too far in the future")
    return claims


def _public_key(pem: str) -> Any:
    """The public key of a PEM certificate or public key (the connected app keeps a certificate)."""
    if "CERTIFICATE" in pem:
        return x509.load_pem_x509_certificate(pem.encode()).public_key()
    return serialization.load_pem_public_key(pem.encode())


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    resp = jsonify({"error": error, "error_description": description})
    resp.status_code = status
    return resp


LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Login | Salesforce (fake)</title></head>
<body><h1>Salesforce (fake)</h1>
<form method="post" action="/services/oauth2/authorize/approve">
<input type="hidden" name="grant" value="{grant}">
<label>Username <input name="username" id="username" value="{username}"></label>
<label>Password <input name="pw" id="password" type="password"></label>
<button type="submit" id="Login" name="action" value="allow">Log In and Allow</button>
<button type="submit" id="Deny" name="action" value="deny">Deny</button>
</form>{error}</body></html>"""


def create_app(state: FakeSalesforceState) -> Flask:
    """The fake's Flask app over ``state``."""
    app = Flask("fake_salesforce")
    pending: dict[str, dict[str, str]] = {}

    @app.get("/services/oauth2/authorize")
    def authorize() -> Any:
        args = request.args
        if args.get("client_id") != state.client_id:
            return Response("OAUTH_EC_APP_NOT_FOUND: client identifier invalid", status=400)
        if args.get("response_type") != "code":
            return Response("unsupported_response_type", status=400)
        if not args.get("redirect_uri"):
            return Response("redirect_uri_mismatch", status=400)
        grant = secrets.token_urlsafe(12)
        pending[grant] = dict(args)
        return Response(LOGIN_PAGE.format(grant=grant, username=html.escape(args.get("login_hint", "")), error=""),
                        mimetype="text/html")

    @app.post("/services/oauth2/authorize/approve")
    def approve() -> Any:
        params = pending.pop(request.form.get("grant", ""), None)
        if params is None:
            return Response("grant expired", status=400)
        redirect_uri = params["redirect_uri"]
        base = {"state": params.get("state", "")} if "state" in params else {}
        if request.form.get("action") == "deny":
            query = urlencode({"error": "access_denied", "error_description": "end-user denied authorization", **base})
            return Response(status=302, headers={"Location": f"{redirect_uri}?{query}"})
        with state.lock:
            user = state.users.get(request.form.get("username", ""))
        if user is None or user.password != request.form.get("pw", ""):
            pending[request.form.get("grant", "")] = params
            page = LOGIN_PAGE.format(grant=html.escape(request.form.get("grant", "")),
                                     username=html.escape(request.form.get("username", "")),
                                     error='<p id="error">Please check your username and password.</p>')
            return Response(page, mimetype="text/html")
        code = "aPrx" + secrets.token_urlsafe(16)
        challenge = params.get("code_challenge", "")
        if challenge and params.get("code_challenge_method", "plain") != "S256":
            return Response("only S256 supported by this fake", status=400)
        with state.lock:
            state.codes[code] = _Grant(user, params["client_id"], redirect_uri, challenge, time.time())
        query = urlencode({"code": code, **base})
        return Response(status=302, headers={"Location": f"{redirect_uri}?{query}"})

    def token_payload(user: SfUser, access: str, refresh: str | None) -> dict[str, Any]:
        payload = {
            "access_token": access,
            "instance_url": state.base_url,
            "id": f"{state.base_url}/id/{user.org_id}/{user.user_id}",
            "token_type": "Bearer",
            "issued_at": str(int(time.time() * 1000)),
            "signature": base64.b64encode(secrets.token_bytes(32)).decode(),
            "scope": "api refresh_token",
        }
        if refresh is not None:
            payload["refresh_token"] = refresh
        return payload

    @app.post("/services/oauth2/token")
    def token() -> Any:
        form = request.form
        grant_type = form.get("grant_type", "")
        state.token_requests.append(grant_type)
        if grant_type == JWT_BEARER:
            # No client secret: the assertion's signature is the app's proof.
            return jwt_bearer(form.get("assertion", ""))
        if form.get("client_id") != state.client_id or form.get("client_secret") != state.client_secret:
            return _oauth_error("invalid_client", "invalid client credentials")
        if grant_type == "authorization_code":
            with state.lock:
                grant = state.codes.pop(form.get("code", ""), None)
            if grant is None or time.time() - grant.issued > 900:
                return _oauth_error("invalid_grant", "invalid authorization code")
            if grant.redirect_uri != form.get("redirect_uri"):
                return _oauth_error("invalid_grant", "redirect_uri must match configuration")
            if grant.code_challenge:
                verifier = form.get("code_verifier", "")
                if not verifier or _s256(verifier) != grant.code_challenge:
                    return _oauth_error("invalid_grant", "invalid code verifier")
            refresh = "5Aep" + secrets.token_urlsafe(32)
            with state.lock:
                state.refresh_tokens[refresh] = grant.user
            return jsonify(token_payload(grant.user, state.issue_access_token(grant.user), refresh))
        if grant_type == "refresh_token":
            refresh = form.get("refresh_token", "")
            with state.lock:
                user = state.refresh_tokens.get(refresh)
            if user is None:
                return _oauth_error("invalid_grant", "expired access/refresh token")
            return jsonify(token_payload(user, state.issue_access_token(user), None))
        return _oauth_error("unsupported_grant_type", "grant type not supported")

    def jwt_bearer(assertion: str) -> Response:
        claims = check_assertion(state, assertion)
        if isinstance(claims, Response):
            return claims
        with state.lock:
            user = state.users.get(str(claims.get("sub", "")))
            allowed = user is not None and user.username in state.preauthorized
        if user is None or not allowed:
            # Salesforce answers the same for an unknown username and one not pre-authorised.
            return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        if not user.is_active:
            return _oauth_error("invalid_grant", "inactive user")
        return jsonify(token_payload(user, state.issue_access_token(user), None))

    @app.post("/services/oauth2/revoke")
    def revoke() -> Any:
        token_value = request.form.get("token", "")
        with state.lock:
            state.refresh_tokens.pop(token_value, None)
            state.access_tokens.pop(token_value, None)
        return Response(status=200)

    @app.get("/services/oauth2/userinfo")
    def userinfo() -> Any:
        user = state.user_for_bearer(request.headers.get("Authorization"))
        if user is None:
            return Response("Bad_OAuth_Token", status=403)
        return jsonify({
            "sub": f"{state.base_url}/id/{user.org_id}/{user.user_id}",
            "user_id": user.user_id,
            "organization_id": user.org_id,
            "preferred_username": user.username,
            "nickname": user.name,
            "name": user.name,
            "email": user.email,
            "email_verified": True,
            "user_type": "STANDARD",
            "active": True,
            "is_app_installed": True,
            "urls": {"rest": f"{state.base_url}/services/data/v{{version}}/"},
        })

    from sandbox import salesforce_pages, salesforce_rest

    # The REST data API (query, composite, sObject Collections, describe, limits).
    salesforce_rest.register(app, state)
    # Read-only pages of what was logged (the pane's record links land there in development).
    salesforce_pages.register(app, state)
    return app
