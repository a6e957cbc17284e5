"""Sessions, sign-in dialogs and the current user: ``/api/session``, ``/api/dialog``, ``/api/me``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, g, jsonify, request

from backend.api.blueprint import bp
from backend.api.errors import ApiError
from backend.api.tokens import SALESFORCE_CHECK, authenticate, current_user, issue_token
from backend.api.validation import choice_field, email_field, json_body, text_field
from backend.auth.common import issue_ticket, redeem_dialog_code, unspent_dialog_code
from backend.auth.salesforce import credentials_for, oauth_client
from backend.connectors import PROVIDERS
from backend.errors import AuthRevoked, Unavailable
from backend.extensions import services
from backend.jobs.sync import enqueue_sync
from backend.security import proofs
from backend.security.crypto import DecryptError
from backend.security.identity import ProofInvalid, VerifiedMailbox
from backend.store.users import User
from backend.sync.microsoft import activate_on_behalf_of

log = logging.getLogger(__name__)

# Mailbox proofs checked per user (of an unspent sign-in code) per window (issue 18).
PROOF_CHECKS_PER_USER = 10
PROOF_CHECK_WINDOW_SECONDS = 15 * 60
# Routes that work without a bearer token.
PUBLIC_ENDPOINTS = {"api.create_session", "api.openapi_document", "api.client_config"}
# MSAL.js with Nested App Authentication (3.11+) is not on Microsoft's CDN: we serve a vendored copy.
MSAL_BROWSER_PATH = "/js/vendor/msal-browser-4.30.0.min.js"


@bp.before_request
def _require_token() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS or request.method == "OPTIONS":
        return
    if request.endpoint is None:
        return  # unknown route: let the 404 handler answer in JSON
    if request.endpoint.startswith("api.admin_"):
        # The console's cookie session or a bearer token: backend.api.admin_auth decides, and its admin
        # check asks Salesforce (and ends every session on a refused login) there.
        return
    user, _ = authenticate()
    # Every authenticated request, not only /api/me: a token must not outlive its Salesforce login.
    check_salesforce(user)


@bp.after_request
def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/config")
def client_config() -> Response:
    """What the task pane needs to know before login (no secrets)."""
    settings = services().settings
    return jsonify({
        "providers": {
            "salesforce": settings.salesforce_configured,
            "microsoft": settings.microsoft_configured,
            # Offered only once a mailbox connector exists for it (the explicit provider map).
            "google": settings.google_configured and "google" in PROVIDERS,
            "exchange": True,
        },
        "naa": {
            "client_id": settings.MS_CLIENT_ID,
            "msal_url": MSAL_BROWSER_PATH,
            "scope": f"{settings.MS_API_AUDIENCE or ('api://' + settings.public_host + '/' + settings.MS_CLIENT_ID)}/"
                     f"{settings.MS_API_SCOPE}" if settings.MS_CLIENT_ID else "",
        },
        "require_mailbox_proof": settings.REQUIRE_MAILBOX_PROOF,
    })


@bp.post("/session")
def create_session() -> Any:
    """Trade a one-time dialog code (once) for a bearer token, recording the add-in mailbox."""
    data = json_body()
    code = text_field(data, "code", max_len=2048)
    mailbox = email_field(data, "mailbox", label="The add-in mailbox")
    proof = text_field(data, "mailbox_proof", required=False, max_len=16_384, label="mailbox_proof")
    # The verifier whose hash the pane put in the dialog's start URL: a code handed to another pane
    # (or read off the dialog) is useless without it.
    verifier = text_field(data, "verifier", required=False, max_len=128, label="verifier")
    settings = services().settings
    # Only someone who just signed in may make us check a proof: checking one can mean fetching
    # signing keys from a host the token names, which must not be open to anonymous callers, nor
    # to someone replaying a spent code. So the code must be authentic *and unspent* first.
    code_uid = unspent_dialog_code(code, verifier)
    if code_uid is None:
        raise ApiError(400, "invalid_code",
                       "This sign-in code is not valid, has expired or was already used. Log in to Salesforce again.")
    if not proof and settings.REQUIRE_MAILBOX_PROOF:
        # Checked before the code is spent, so the pane can retry with a proof.
        raise ApiError(401, "mailbox_proof_required",
                       "Outlook did not confirm which mailbox this is. Reopen the add-in and try again.")
    verified = None
    if proof:
        # Each check may fetch a document from a host the proof names: a few per user per window.
        allowed, retry_after = services().store.ratelimit.hit("proof-check", code_uid, PROOF_CHECKS_PER_USER,
                                                              PROOF_CHECK_WINDOW_SECONDS)
        if not allowed:  # the code is not spent: the pane may try again later
            raise ApiError(429, "rate_limited", "Too many sign-in attempts. Try again in a few minutes.",
                           retry_after=retry_after)
        try:
            clients = services().clients
            verified = proofs.verify(proof, mailbox, naa=clients.naa_verifier, exchange=clients.exchange_verifier,
                                     proven_addresses=services().store.exchange_ids.addresses)
        except ProofInvalid as exc:
            status = 503 if exc.code == "identity_unavailable" else 401
            raise ApiError(status, exc.code, str(exc)) from None
    uid = redeem_dialog_code(code, verifier)
    if uid is None:
        raise ApiError(400, "invalid_code",
                       "This sign-in code is not valid or was already used. Log in to Salesforce again.")
    store = services().store
    user = store.users.get(uid)
    if user is None:
        raise ApiError(400, "invalid_code", "This sign-in code is not valid. Log in to Salesforce again.")
    store.users.update(
        uid,
        addin_mailbox=mailbox,
        addin_mailbox_verified=verified is not None and verified.confirmed,
        addin_identity=verified.identity if verified else "",
    )
    issued = issue_token(uid)
    log.info("api session created uid=%s proof=%s verified=%s", uid, verified.kind if verified else "none",
             verified is not None and verified.confirmed)
    if verified is not None and verified.confirmed:
        # Where the mailbox can be connected without a password (Microsoft 365 with consent
        # given), sync starts now; a failure there never fails the login.
        _start_sync_after_login(store.users.get(uid) or user, verified)
    return jsonify({"token": issued.token, "expires_at": issued.expires_at}), 201


def _start_sync_after_login(user: User, verified: VerifiedMailbox) -> None:
    svc = services()
    try:
        mailbox = activate_on_behalf_of(svc.store, svc.settings, svc.clients.microsoft_auth, user, verified)
    except Exception:
        log.exception("sync activation after login failed uid=%s", user.id)
        return
    if mailbox is not None:
        enqueue_sync(mailbox.id, interactive=True)


@bp.delete("/session")
def delete_session() -> Any:
    """Log out this task pane (sync keeps running server-to-server)."""
    from flask import g

    services().store.sessions.revoke(g.sid)
    return Response(status=204)


@bp.delete("/sessions")
def delete_all_sessions() -> Any:
    """Log out everywhere: end every task pane and admin console session of this user (sync keeps running)."""
    user = current_user()
    ended = services().store.sessions.revoke_all(user.id)
    services().store.consoles.end_all(user.id)
    log.info("api sessions ended everywhere uid=%s count=%d", user.id, ended)
    return Response(status=204)


@bp.post("/dialog")
def dialog() -> Response:
    """The start URL of a sign-in dialog, with a short-lived single-use ticket naming the user.

    For Salesforce (switch account) ``env`` and ``domain`` choose the environment, as on the login
    screen; by default the current account's. The dialog checks the domain as at first login.
    """
    data = json_body()
    provider = choice_field(data, "provider", ("salesforce", "microsoft", "google"))
    settings = services().settings
    if provider != "salesforce" and provider not in PROVIDERS:
        raise ApiError(409, "provider_not_available", f"Sync with {provider.title()} is not available yet.")
    configured = {
        "salesforce": settings.salesforce_configured,
        "microsoft": settings.microsoft_configured,
        "google": settings.google_configured,
    }[provider]
    if not configured:
        raise ApiError(409, "provider_not_configured",
                       f"Sign-in with {provider.title()} is not configured on this server.")
    user = current_user()
    url = f"{settings.PUBLIC_BASE_URL}/auth/{provider}/start?ticket={issue_ticket(user.id, provider)}"
    if provider == "salesforce":
        from urllib.parse import quote, urlsplit

        env = choice_field(data, "env", ("production", "sandbox", "mydomain"), required=False) or user.environment
        domain = text_field(data, "domain", required=False, max_len=253, label="My Domain")
        challenge = text_field(data, "pane_challenge", required=False, max_len=64, label="pane_challenge")
        if challenge:
            url += f"&pane_challenge={quote(challenge, safe='')}"
        if env == "mydomain" and not domain:
            if user.environment != "mydomain":
                raise ApiError(400, "invalid_input", "Enter your My Domain, for example acme.my.salesforce.com.",
                               field="domain")
            domain = urlsplit(user.login_url).netloc
        url += f"&env={env}"
        if env == "mydomain":
            url += f"&domain={quote(domain, safe='')}"
    return jsonify({"url": url})


def check_salesforce(user: User) -> None:
    """Prove the user's Salesforce login still works (refreshing when needed), at most every few minutes."""
    store = services().store
    if not g.get("salesforce_check_due", True):
        return  # authenticate() read the marker with the session (checked recently), or done already
    g.salesforce_check_due = False
    if not store.once.first_use(SALESFORCE_CHECK, user.id, services().settings.SALESFORCE_CHECK_SECONDS):
        return
    g.salesforce_checked = True
    credentials = credentials_for(user)
    try:
        credentials.call(oauth_client().userinfo)
    except DecryptError:
        # Our configuration, not the person's login (issue 18): never revoke or delete on it. The
        # error handler answers 503 and logs what to fix; check again on the next request.
        store.redis.delete(store.keys("once", SALESFORCE_CHECK, user.id))
        raise
    except AuthRevoked as exc:
        reason = f"Salesforce no longer accepts your login ({exc.message})"
        store.users.update(user.id, salesforce_status="revoked", salesforce_status_reason=reason)
        credentials.forget()
        store.sessions.revoke_all(user.id)
        store.consoles.end_all(user.id)  # the admin console's sessions end with the login too
        log.warning("salesforce login unusable uid=%s cause=%s", user.id, type(exc).__name__)
        raise ApiError(401, "salesforce_revoked", f"{reason}. Log in to Salesforce again.") from None
    except Unavailable:
        # Salesforce down is not the person's problem to fix; check again next time.
        store.redis.delete(store.keys("once", SALESFORCE_CHECK, user.id))


@bp.get("/me")
def me() -> Response:
    """The user, the add-in mailbox and the Salesforce account."""
    user = current_user()
    check_salesforce(user)  # done already for this request (the blueprint's hook): no round trip
    if g.get("salesforce_checked"):
        # This request asked Salesforce: what it learnt about the login is in the store now.
        user = services().store.users.get(user.id) or user
    proof_kind = user.addin_identity.split(":", 1)[0] if user.addin_identity else None
    return jsonify({
        "user": {"id": user.id, "name": user.display_name, "email": user.email},
        "mailbox": {"address": user.addin_mailbox, "verified": user.addin_mailbox_verified, "proof": proof_kind},
        "salesforce": {
            "username": user.username,
            "org_id": user.org_id,
            "instance_url": user.instance_url,
            "environment": user.environment,
            "status": user.salesforce_status,
        },
        # Administration shows in the pane's Menu for admins only (Salesforce asked every few minutes).
        "is_admin": _is_admin(user),
    })


def _is_admin(user: User) -> bool:
    from backend.api.admin_auth import admin_flag

    try:
        return admin_flag(user)
    except ApiError as exc:
        if exc.status == 503:
            return user.is_admin  # Salesforce down: the last answer it gave
        raise
