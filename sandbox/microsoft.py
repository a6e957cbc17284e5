"""A fake Microsoft identity platform (Entra ID v2.0) at the wire protocol.

Served on loopback https; the product reaches it only through ``MS_AUTHORITY`` and msal talks to it
unchanged. The URL layout follows Entra ID:

* ``{origin}/{tenant}/v2.0/.well-known/openid-configuration`` and ``/{tenant}/discovery/v2.0/keys``;
* ``GET /{tenant}/oauth2/v2.0/authorize`` (a sign-in + consent page, or automatic answers per
  :attr:`FakeMicrosoftState.authorize_mode`), ``POST .../authorize/approve`` (the page's form);
* ``POST /{tenant}/oauth2/v2.0/token`` for ``authorization_code`` (PKCE checked, single use, bound
  to its client and redirect URI), ``refresh_token``, on-behalf-of
  (``urn:ietf:params:oauth:grant-type:jwt-bearer``, with per-user consent) and
  ``client_credentials`` (after admin consent);
* ``GET /{tenant}/v2.0/adminconsent`` (tenant-wide consent by an administrator).

Access tokens are opaque here; :mod:`sandbox.graph` looks them up in this state. Issuer
``{origin}/{tid}/v2.0``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, jsonify, redirect, request
from jwt.algorithms import RSAAlgorithm

DEFAULT_TENANT = "tenant-contoso"
RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}
MULTI_TENANT = {"organizations", "common", "consumers"}


@dataclass
class SigningKey:
    """An RSA key published in the JWKS (or not, to test unknown keys)."""

    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        """The public JWK."""
        data: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        data.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return data


def new_key(kid: str | None = None) -> SigningKey:
    """A fresh 2048-bit signing key."""
    return SigningKey(kid or uuid.uuid4().hex[:16], rsa.generate_private_key(public_exponent=65537, key_size=2048))


def default_oid(email: str) -> str:
    """The object id the fake gives an address (the same one :meth:`FakeMicrosoftState.naa_token` uses)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, email.lower()))


@dataclass
class MsUser:
    """A work account in a tenant."""

    mail: str
    tid: str
    oid: str
    upn: str
    display_name: str
    aliases: list[str] = field(default_factory=list)
    # Delegated consent of this user for our app's Graph scopes.
    consented: bool = False
    is_admin: bool = False


@dataclass
class MsTenant:
    """A tenant's consent policy and state."""

    tid: str
    # False: users may not consent themselves ("Need admin approval").
    user_consent_allowed: bool = True
    # Set by the admin-consent endpoint: application permissions and consent for every user.
    admin_consented: bool = False
    # False: the app registration lists only application permissions, so admin consent does not
    # cover delegated (on-behalf-of) access.
    admin_consent_covers_delegated: bool = True
    # The application permissions (app roles) admin consent granted: they go into app tokens' roles.
    app_roles: frozenset[str] = frozenset({"Mail.Read", "Calendars.Read"})
    # RBAC for Applications / an ApplicationAccessPolicy: the mailboxes (addresses, lower case) app
    # tokens may read; None is the whole tenant. Graph answers 403 for a mailbox outside it.
    app_access_scope: frozenset[str] | None = None


@dataclass
class TokenInfo:
    """What an access token stands for (Graph looks it up here)."""

    kind: str  # "delegated" or "app"
    tid: str
    client_id: str
    scopes: frozenset[str]
    expires: float
    oid: str = ""


@dataclass
class _Code:
    user: MsUser
    client_id: str
    redirect_uri: str
    challenge: str
    method: str
    nonce: str
    scopes: list[str]
    issued: float


@dataclass
class _Refresh:
    user: MsUser
    client_id: str
    scopes: list[str]


@dataclass
class FakeMicrosoftState:
    """Keys, tenants, users and tokens of the fake identity platform; tests change it directly."""

    client_id: str = "11111111-2222-3333-4444-555555555555"
    client_secret: str = "ms-test-secret"
    keys: list[SigningKey] = field(default_factory=lambda: [new_key("test-key-1")])
    base_url: str = ""
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: dict[str, MsUser] = field(default_factory=dict)
    tenants: dict[str, MsTenant] = field(default_factory=dict)
    # Other registered apps (client id -> secret), e.g. to mint a code for another client.
    other_clients: dict[str, str] = field(default_factory=lambda: {"99999999-0000-0000-0000-000000000000": "other"})
    codes: dict[str, _Code] = field(default_factory=dict)
    refresh_tokens: dict[str, _Refresh] = field(default_factory=dict)
    access_tokens: dict[str, TokenInfo] = field(default_factory=dict)
    # "form": render the sign-in/consent page; "approve": sign in ``auto_user`` (or login_hint) and
    # accept; "deny": the person clicks Cancel.
    authorize_mode: str = "form"
    auto_user: str = ""
    # "approve": ``auto_user`` (an administrator) grants tenant-wide consent; "deny": they cancel.
    admin_consent_mode: str = "approve"
    # Put this nonce (instead of the request's) into the next id tokens (a replayed/foreign id token).
    id_token_nonce_override: str | None = None
    # Extra claims merged into id tokens (e.g. {"tid": "other"} to forge a mismatch).
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    access_token_lifetime: int = 3600
    # False: answer without refresh tokens (offline access refused by policy).
    issue_refresh_tokens: bool = True
    # Grant types the token endpoint served, in order (tests assert on them).
    token_requests: list[str] = field(default_factory=list)
    # Form parameters of every authorize request (PKCE and nonce are checked by tests).
    authorize_requests: list[dict[str, str]] = field(default_factory=list)

    # --- identities -------------------------------------------------------------------------

    def issuer(self, tid: str) -> str:
        """The v2.0 issuer for a tenant."""
        return f"{self.base_url}/{tid}/v2.0"

    def tenant(self, tid: str) -> MsTenant:
        """A tenant (created with defaults on first use)."""
        with self.lock:
            if tid not in self.tenants:
                self.tenants[tid] = MsTenant(tid)
            return self.tenants[tid]

    def add_user(self, mail: str, tid: str = DEFAULT_TENANT, *, aliases: list[str] | tuple[str, ...] = (),
                 upn: str | None = None, oid: str | None = None, display_name: str | None = None,
                 consented: bool = False, is_admin: bool = False) -> MsUser:
        """Add a work account (its oid matches :meth:`naa_token`'s default for the same address)."""
        user = MsUser(mail=mail.lower(), tid=tid, oid=oid or default_oid(mail), upn=(upn or mail).lower(),
                      display_name=display_name or mail.split("@")[0].title(), aliases=[a.lower() for a in aliases],
                      consented=consented, is_admin=is_admin)
        with self.lock:
            self.tenant(tid)
            self.users[user.mail] = user
        return user

    def find_user(self, name: str) -> MsUser | None:
        """A user by mail, UPN, alias or object id."""
        key = name.strip().lower()
        with self.lock:
            if key in self.users:  # by mail: one lookup, so a 10,000-person tenant stays fast
                return self.users[key]
            for user in self.users.values():
                if key in {user.mail, user.upn, user.oid, *user.aliases}:
                    return user
        return None

    def consent(self, mail: str, given: bool = True) -> None:
        """Record (or withdraw) a user's delegated consent."""
        user = self.find_user(mail)
        assert user is not None, mail
        with self.lock:
            user.consented = given

    def revoke_refresh_tokens(self, mail: str | None = None) -> None:
        """Revoke refresh and access tokens (all, or one user's), as "revoke sessions" does."""
        with self.lock:
            for token, grant in list(self.refresh_tokens.items()):
                if mail is None or grant.user.mail == mail.lower():
                    del self.refresh_tokens[token]
            for token, info in list(self.access_tokens.items()):
                user = self.find_user(info.oid) if info.oid else None
                if info.kind == "delegated" and (mail is None or (user is not None and user.mail == mail.lower())):
                    del self.access_tokens[token]

    def expire_access_tokens(self) -> None:
        """Make every access token invalid (Graph answers 401; a refresh gets a new one)."""
        with self.lock:
            self.access_tokens.clear()

    def token_info(self, authorization: str | None) -> TokenInfo | None:
        """What an ``Authorization: Bearer`` header stands for, or None (unknown or expired)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        with self.lock:
            info = self.access_tokens.get(token.strip())
        if info is None or info.expires < time.time():
            return None
        return info

    def issue_code(self, mail: str, client_id: str | None = None, redirect_uri: str = "", *,
                   challenge: str = "", nonce: str = "", scopes: list[str] | None = None) -> str:
        """Mint an authorization code directly (e.g. for another client)."""
        user = self.find_user(mail)
        assert user is not None, mail
        code = "code-" + secrets.token_urlsafe(18)
        with self.lock:
            self.codes[code] = _Code(user, client_id or self.client_id, redirect_uri, challenge, "S256" if challenge
                                     else "", nonce, scopes or ["Mail.Read", "openid", "offline_access"], time.time())
        return code

    # --- tokens -----------------------------------------------------------------------------

    def mint(self, claims: dict[str, Any], key: SigningKey | None = None, headers: dict[str, Any] | None = None) -> str:
        """Sign ``claims`` as a JWT (RS256) with a published key unless told otherwise."""
        signing = key or self.keys[0]
        return jwt.encode(claims, signing.private, algorithm="RS256", headers={"kid": signing.kid, **(headers or {})})

    def naa_token(
        self,
        email: str,
        tid: str = DEFAULT_TENANT,
        oid: str | None = None,
        audience: str | None = None,
        lifetime: int = 3600,
        scp: str = "access_as_user",
        **overrides: Any,
    ) -> str:
        """An access token for our API as Nested App Authentication would hand the task pane."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience or self.client_id,
            "iss": self.issuer(tid),
            "iat": now - 5,
            "nbf": now - 5,
            "exp": now + lifetime,
            "tid": tid,
            "oid": oid or default_oid(email),
            "preferred_username": email,
            "upn": email,
            "name": email.split("@")[0],
            "scp": scp,
            "ver": "2.0",
            "azp": self.client_id,
        }
        claims.update(overrides)
        return self.mint(claims)

    def _access_token(self, info: TokenInfo) -> str:
        token = "fake-at-" + secrets.token_urlsafe(24)
        with self.lock:
            self.access_tokens[token] = info
        return token

    def _id_token(self, user: MsUser, client_id: str, nonce: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": client_id, "iss": self.issuer(user.tid), "iat": now, "nbf": now, "exp": now + 3600,
            "sub": hashlib.sha256(f"{user.oid}:{client_id}".encode()).hexdigest()[:43], "oid": user.oid,
            "tid": user.tid, "preferred_username": user.upn, "name": user.display_name, "ver": "2.0",
        }
        if self.id_token_nonce_override is not None:
            claims["nonce"] = self.id_token_nonce_override
        elif nonce:
            claims["nonce"] = nonce
        claims.update(self.id_token_overrides)
        return self.mint(claims)

    def user_tokens(self, user: MsUser, client_id: str, scopes: list[str], nonce: str = "",
                    refresh: bool = True) -> dict[str, Any]:
        """A token response for a user (delegated access token, refresh token, id token, client_info)."""
        granted = [s for s in scopes if s not in RESERVED_SCOPES]
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(granted),
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": self._access_token(TokenInfo("delegated", user.tid, client_id, frozenset(granted),
                                                         time.time() + self.access_token_lifetime, user.oid)),
            "client_info": base64.urlsafe_b64encode(json.dumps({"uid": user.oid, "utid": user.tid}).encode())
            .rstrip(b"=").decode(),
        }
        if refresh and self.issue_refresh_tokens and "offline_access" in scopes:
            rt = "fake-rt-" + secrets.token_urlsafe(24)
            with self.lock:
                self.refresh_tokens[rt] = _Refresh(user, client_id, list(scopes))
            body["refresh_token"] = rt
        if "openid" in scopes:
            body["id_token"] = self._id_token(user, client_id, nonce)
        return body

    def may_use(self, user: MsUser) -> bool:
        """True when the user (or their tenant's administrator) consented to our app."""
        tenant = self.tenant(user.tid)
        return user.consented or (tenant.admin_consented and tenant.admin_consent_covers_delegated)

    def client_secret_of(self, client_id: str) -> str | None:
        """The secret of a registered client."""
        if client_id == self.client_id:
            return self.client_secret
        return self.other_clients.get(client_id)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _error(error: str, description: str, status: int = 400, **extra: Any) -> Response:
    codes = [int(description[6:11])] if description.startswith("AADSTS") and description[6:11].isdigit() else []
    resp = jsonify({"error": error, "error_description": description, "error_codes": codes, **extra})
    resp.status_code = status
    return resp


SIGNIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Sign in to your account (fake)</title></head><body><h1>Microsoft (fake)</h1>
<p>Sidebar Sync wants to read your mail, calendars and contacts.</p>
<form method="post" action="{action}">
<input type="hidden" name="grant" value="{grant}">
<label>Email <input name="username" id="username" value="{username}"></label>
<button type="submit" id="accept" name="action" value="accept">Accept</button>
<button type="submit" id="cancel" name="action" value="deny">Cancel</button>
</form>{error}</body></html>"""


def create_app(state: FakeMicrosoftState) -> Flask:
    """The fake's Flask app over ``state``."""
    app = Flask("fake_microsoft")
    pending: dict[str, dict[str, str]] = {}

    @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
    def openid_configuration(tenant: str) -> Any:
        base = state.base_url
        return jsonify({
            "issuer": f"{base}/{{tenantid}}/v2.0" if tenant in MULTI_TENANT else state.issuer(tenant),
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": None,
        })

    @app.get("/<tenant>/discovery/v2.0/keys")
    def jwks(tenant: str) -> Any:
        with state.lock:
            return jsonify({"keys": [k.jwk() for k in state.keys]})

    # --- authorize ------------------------------------------------------------------------------

    def back(params: dict[str, str], **answer: str) -> Response:
        answer = {k: v for k, v in answer.items() if v}
        if params.get("state"):
            answer["state"] = params["state"]
        return redirect(f"{params['redirect_uri']}?{urlencode(answer)}", code=302)

    def decide(tenant: str, params: dict[str, str], username: str, action: str) -> Response:
        if action == "deny":
            return back(params, error="access_denied",
                        error_description="AADSTS65004: User declined to consent to access the app.")
        user = state.find_user(username)
        if user is None:
            return Response(SIGNIN_PAGE.format(action=f"/{tenant}/oauth2/v2.0/authorize/approve",
                                               grant=params["_grant"], username=html.escape(username),
                                               error="<p role='alert'>We couldn't find an account with that "
                                                     "username.</p>"), mimetype="text/html")
        if tenant not in MULTI_TENANT and tenant != user.tid:
            return back(params, error="invalid_request",
                        error_description="AADSTS50020: User account from another tenant cannot sign in here.")
        if params.get("prompt") == "admin_consent":
            # Consent for the whole organisation: only an administrator can give it.
            if not user.is_admin or state.admin_consent_mode == "deny":
                return back(params, error="access_denied",
                            error_description="AADSTS90094: The grant requires admin permission.")
            with state.lock:
                state.tenant(user.tid).admin_consented = True
        if not state.may_use(user):
            if not state.tenant(user.tid).user_consent_allowed and not user.is_admin:
                # The "Need admin approval" screen: the person cannot consent for themselves.
                return back(params, error="consent_required",
                            error_description="AADSTS90094: The grant requires admin permission.")
            with state.lock:
                user.consented = True  # clicking Accept on the consent screen
        code = state.issue_code(user.mail, params["client_id"], params["redirect_uri"],
                                challenge=params.get("code_challenge", ""), nonce=params.get("nonce", ""),
                                scopes=params.get("scope", "").split())
        with state.lock:
            state.codes[code].method = params.get("code_challenge_method", "")
        return back(params, code=code, session_state=uuid.uuid4().hex)

    @app.get("/<tenant>/oauth2/v2.0/authorize")
    def authorize(tenant: str) -> Any:
        params = dict(request.args)
        state.authorize_requests.append(params)
        if state.client_secret_of(params.get("client_id", "")) is None:
            return Response("AADSTS700016: Application not found in the directory.", status=400)
        if params.get("response_type") != "code" or not params.get("redirect_uri"):
            return Response("AADSTS900144: The request body must contain response_type=code and redirect_uri.",
                            status=400)
        grant = secrets.token_urlsafe(12)
        params["_grant"] = grant
        pending[grant] = params
        if state.authorize_mode == "approve":
            pending.pop(grant)
            return decide(tenant, params, state.auto_user or params.get("login_hint", ""), "accept")
        if state.authorize_mode == "deny":
            pending.pop(grant)
            return decide(tenant, params, "", "deny")
        return Response(SIGNIN_PAGE.format(action=f"/{tenant}/oauth2/v2.0/authorize/approve", grant=grant,
                                           username=html.escape(params.get("login_hint", "")), error=""),
                        mimetype="text/html")

    @app.post("/<tenant>/oauth2/v2.0/authorize/approve")
    def approve(tenant: str) -> Any:
        params = pending.pop(request.form.get("grant", ""), None)
        if params is None:
            return Response("AADSTS90014: The sign-in request expired. Start again.", status=400)
        response = decide(tenant, params, request.form.get("username", ""), request.form.get("action", "accept"))
        if response.status_code == 200:
            pending[params["_grant"]] = params  # the page again (unknown account): the grant stays usable
        return response

    # --- token ----------------------------------------------------------------------------------

    @app.post("/<tenant>/oauth2/v2.0/token")
    def token(tenant: str) -> Any:
        form = request.form
        grant_type = form.get("grant_type", "")
        state.token_requests.append(grant_type)
        client_id = form.get("client_id", "")
        if state.client_secret_of(client_id) is None or form.get("client_secret") != state.client_secret_of(client_id):
            return _error("invalid_client", "AADSTS7000215: Invalid client secret provided.", 401)
        scopes = form.get("scope", "").split()
        if grant_type == "authorization_code":
            with state.lock:
                code = state.codes.pop(form.get("code", ""), None)
            if code is None or time.time() - code.issued > 600:
                return _error("invalid_grant", "AADSTS70008: The provided authorization code or refresh token has "
                                               "expired or was already used.")
            if code.client_id != client_id:
                return _error("invalid_grant", "AADSTS70000: The provided authorization code was issued to a "
                                               "different client.")
            if code.redirect_uri != form.get("redirect_uri", ""):
                return _error("invalid_grant", "AADSTS50011: The redirect URI does not match the one the code was "
                                               "issued for.")
            if code.challenge and (code.method != "S256" or _s256(form.get("code_verifier", "")) != code.challenge):
                return _error("invalid_grant", "AADSTS501481: The Code_Verifier does not match the code_challenge "
                                               "supplied in the authorization request.")
            if tenant not in MULTI_TENANT and tenant != code.user.tid:
                return _error("invalid_grant", "AADSTS50020: User account from another tenant.")
            return jsonify(state.user_tokens(code.user, client_id, scopes or code.scopes, code.nonce))
        if grant_type == "refresh_token":
            with state.lock:
                grant = state.refresh_tokens.get(form.get("refresh_token", ""))
            if grant is None:
                return _error("invalid_grant", "AADSTS50173: The provided grant has expired due to it being revoked, "
                                               "a fresh auth token is needed.", suberror="bad_token")
            if grant.client_id != client_id:
                return _error("invalid_grant", "AADSTS70000: The refresh token was issued to a different client.")
            if not state.may_use(grant.user):
                return _error("invalid_grant", "AADSTS65001: The user or administrator has not consented to use the "
                                               "application.", suberror="consent_required")
            return jsonify(state.user_tokens(grant.user, client_id, scopes or grant.scopes))
        if grant_type == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            if form.get("requested_token_use") != "on_behalf_of":
                return _error("invalid_request", "AADSTS50027: requested_token_use must be on_behalf_of.")
            return on_behalf_of(tenant, client_id, form.get("assertion", ""), scopes)
        if grant_type == "client_credentials":
            if len(scopes) != 1 or not scopes[0].endswith("/.default"):
                return _error("invalid_scope", "AADSTS1002012: The provided value for scope is not valid. Client "
                                               "credential flows must have a scope value with /.default suffixed.")
            if tenant in MULTI_TENANT or not state.tenant(tenant).admin_consented:
                return _error("unauthorized_client", "AADSTS700016: Application with identifier was not found in the "
                                                     "directory (no admin consent in this tenant).")
            token_ = state._access_token(TokenInfo("app", tenant, client_id, state.tenant(tenant).app_roles,
                                                   time.time() + state.access_token_lifetime))
            return jsonify({"token_type": "Bearer", "expires_in": state.access_token_lifetime,
                            "ext_expires_in": state.access_token_lifetime, "access_token": token_})
        return _error("unsupported_grant_type", f"AADSTS70003: unsupported grant type {grant_type}.")

    def on_behalf_of(tenant: str, client_id: str, assertion: str, scopes: list[str]) -> Response:
        try:
            header = jwt.get_unverified_header(assertion)
            key = next(k for k in state.keys if k.kid == header.get("kid"))
            claims = jwt.decode(assertion, key.private.public_key(), algorithms=["RS256"], audience=client_id)
        except (jwt.PyJWTError, StopIteration):
            return _error("invalid_grant", "AADSTS50013: Assertion failed signature validation or audience check.")
        user = state.find_user(str(claims.get("oid", ""))) or state.find_user(str(claims.get("preferred_username", "")))
        if user is None or user.tid != claims.get("tid"):
            return _error("invalid_grant", "AADSTS50034: The user account does not exist in the directory.")
        if tenant not in MULTI_TENANT and tenant != user.tid:
            return _error("invalid_grant", "AADSTS50020: User account from another tenant.")
        if not state.may_use(user):
            return _error("invalid_grant", f"AADSTS65001: The user or administrator has not consented to use the "
                                           f"application with ID '{client_id}'. Send an interactive authorization "
                                           f"request for this user and resource.", suberror="consent_required")
        return jsonify(state.user_tokens(user, client_id, scopes))

    # --- admin consent --------------------------------------------------------------------------

    @app.get("/<tenant>/v2.0/adminconsent")
    def adminconsent(tenant: str) -> Any:
        params = dict(request.args)
        if state.client_secret_of(params.get("client_id", "")) is None or not params.get("redirect_uri"):
            return Response("AADSTS700016: Application not found.", status=400)
        if state.admin_consent_mode == "deny":
            return back(params, error="access_denied",
                        error_description="AADSTS65004: The administrator declined to consent.")
        admin = state.find_user(state.auto_user) if state.auto_user else None
        if admin is None or not admin.is_admin:
            return back(params, error="access_denied",
                        error_description="AADSTS90093: The signed-in user is not an administrator.")
        if tenant not in MULTI_TENANT and tenant != admin.tid:
            return back(params, error="invalid_request", error_description="AADSTS50020: Another tenant.")
        state.tenant(admin.tid).admin_consented = True
        return back(params, admin_consent="True", tenant=admin.tid, scope=params.get("scope", ""))

    return app
