"""Salesforce sign-in: the OAuth 2.0 web-server flow (state + PKCE S256) in the Office dialog.

``/auth/salesforce/start`` picks the login host (Production, Sandbox or a My Domain), keeps the
flow in the dialog's session and redirects to Salesforce. ``/auth/salesforce/callback`` checks
state and PKCE, trades the code, reads the user's identity, stores the refresh token encrypted,
seeds the user's sync mailbox, and ends on a page that hands the task pane a one-time code.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

from backend.auth.common import (
    DialogError,
    begin_state,
    bound_dialog_starts,
    dialog_error,
    dialog_result,
    finish_state,
    issue_dialog_code,
    pane_challenge_arg,
    redeem_ticket,
)
from backend.auth.console import console_signed_in
from backend.connectors.salesforce import (
    LoginHostRefused,
    SalesforceCredentials,
    SalesforceOAuth,
    TokenExpired,
    environment_of,
    login_url_for,
    pkce_pair,
)
from backend.errors import AuthRevoked, ServiceMisconfigured, Unavailable
from backend.extensions import services
from backend.security.crypto import DecryptError, fingerprint
from backend.store.users import User, user_id_for

log = logging.getLogger(__name__)
bp = Blueprint("auth_salesforce", __name__, url_prefix="/auth/salesforce")

_DENIED = {
    "access_denied": "You declined access, so Sidebar Sync cannot log your email in Salesforce.",
    "OAUTH_APP_BLOCKED": "Your Salesforce administrator has blocked this app. Ask them to allow Sidebar Sync.",
    "OAUTH_APP_ACCESS_DENIED": "Your Salesforce administrator has not given you access to Sidebar Sync.",
}


def oauth_client() -> SalesforceOAuth:
    """The OAuth client, built from the settings in ``create_app``."""
    return services().clients.salesforce_oauth


def credentials_for(user: User) -> SalesforceCredentials:
    """The live Salesforce credentials of a user."""
    return SalesforceCredentials(oauth_client(), services().store.secrets, user.id, user.login_url, user.instance_url)


@bp.get("/start")
def start() -> Any:
    """Begin the sign-in: choose the login host, remember state and PKCE, go to Salesforce."""
    settings = services().settings
    try:
        if not settings.salesforce_configured:
            raise DialogError("salesforce_not_configured",
                              "Salesforce sign-in is not configured on this server. Contact your administrator.", 503)
        ticket = request.args.get("ticket", "")
        switching = bool(ticket)
        # console=1: the admin console's sign-in, a web page in the browser, not the pane. It ends in a
        # console cookie set on the browser whose Flask session holds this flow (finish_state checks that),
        # so no dialog code is issued and there is no pane verifier to bind it to.
        console = request.args.get("console") == "1" and not switching
        # The opening pane's challenge: the one-time code at the end is usable only with its verifier.
        pane_challenge = "" if console else pane_challenge_arg()
        if switching:
            # From a logged-in pane ("switch account"): the ticket proves the dialog came from it.
            redeem_ticket("salesforce", ticket)
        environment = request.args.get("env", "production")
        try:
            login_url = login_url_for(settings, environment, request.args.get("domain", ""))
        except LoginHostRefused as exc:
            raise DialogError("login_host_refused", str(exc)) from None
        # Last, so only a start that would write a dialog session is counted.
        bound_dialog_starts()
    except DialogError as exc:
        return dialog_error(exc)
    verifier, challenge = pkce_pair()
    # The dialog's session lives in Redis: the verifier goes there sealed, like every secret.
    state = begin_state("salesforce", verifier=services().box.encrypt(verifier), login_url=login_url,
                        started=time.time(), console=console, pane_challenge=pane_challenge)
    return redirect(oauth_client().authorize_url(login_url, state, challenge, force_login=switching), code=302)


@bp.get("/callback")
def callback() -> Response | WerkzeugResponse:
    """Finish the sign-in and hand the task pane a one-time code."""
    try:
        return _callback()
    except DialogError as exc:
        return dialog_error(exc)


def _callback() -> Response | WerkzeugResponse:
    flow = finish_state("salesforce")
    if request.args.get("error"):
        error = request.args.get("error", "")
        message = _DENIED.get(error, "Salesforce did not complete the sign-in. Try again.")
        raise DialogError("salesforce_denied" if error == "access_denied" else "salesforce_error", message, 400)
    code = request.args.get("code", "")
    if not code or len(code) > 2048:
        raise DialogError("code_missing", "Salesforce did not return a sign-in code. Try again.")
    oauth = oauth_client()
    login_url = str(flow["login_url"])
    try:
        tokens = oauth.exchange_code(login_url, code, services().box.decrypt(str(flow["verifier"])))
        identity = oauth.userinfo(tokens.instance_url, tokens.access_token)
    except (AuthRevoked, DecryptError):
        raise DialogError("salesforce_refused", "Salesforce refused the sign-in code. Try signing in again.") from None
    except TokenExpired:
        raise DialogError("salesforce_refused", "Salesforce refused the new session. Try signing in again.") from None
    except ServiceMisconfigured:
        raise DialogError("salesforce_misconfigured", "This server's connection to Salesforce is misconfigured. "
                          "Tell your administrator (the connected app's credentials were refused).", 503) from None
    except Unavailable as exc:
        raise DialogError("salesforce_unavailable", f"{exc.message} Try again in a moment.", 502) from None
    if not tokens.refresh_token:
        raise DialogError(
            "refresh_token_missing",
            "Salesforce did not grant offline access. Ask your administrator to add the "
            "'Perform requests at any time (refresh_token, offline_access)' scope to the connected app.",
        )
    store = services().store
    uid = user_id_for(identity.org_id, identity.user_id)
    user = store.users.get(uid) or User(id=uid, org_id=identity.org_id, sf_user_id=identity.user_id)
    user.username = identity.username
    user.email = identity.email
    user.display_name = identity.name
    user.instance_url = tokens.instance_url
    user.login_url = login_url
    user.environment = environment_of(services().settings, login_url)
    user.salesforce_status = "connected"
    user.salesforce_status_reason = ""
    store.users.save(user)
    credentials_for(user).store_tokens(tokens)
    # The Salesforce login is the CRM side of sync: seed the sync mailbox now, no further step.
    store.mailboxes.ensure(uid, user.org_id)
    log.info("salesforce login uid=%s org=%s refresh=%s", uid, user.org_id, fingerprint(tokens.refresh_token))
    if flow.get("console"):
        return console_signed_in(uid)
    return dialog_result({"status": "ok", "code": issue_dialog_code(uid, str(flow.get("pane_challenge", "")))})
