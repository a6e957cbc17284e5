"""Gmail and Google Workspace: the consent dialog (OAuth web-server flow, state + PKCE S256, offline access).

``/auth/google/start?ticket=...`` (opened by the task pane's dialog with the URL ``POST
/api/dialog`` returned) starts our signed, single-use state (:func:`begin_state`), keeps the PKCE
verifier sealed with the secret box in the dialog's session, and sends the person to Google's
consent screen. ``/auth/google/callback`` checks the state (signature, this window, used once),
words a refusal, redeems the code, reads the mailbox (``users.getProfile`` + send-as aliases),
checks the mailbox match, and only then activates sync, so an earlier working connection
survives every failure. A refresh token we will not keep is revoked at once.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, redirect, request, session

from backend.auth.common import (
    DialogError,
    begin_state,
    dialog_error,
    dialog_result,
    dialog_user,
    finish_dialog,
    finish_state,
    flow_user,
    require_configured,
    unseal_session,
)
from backend.connectors.google import REFRESH_SECRET, GoogleAuth, consent_error, google_identity, pkce_pair
from backend.errors import AuthRevoked, SetupFailed, Throttled, Unavailable
from backend.extensions import services
from backend.jobs.sync import enqueue_sync
from backend.security.crypto import fingerprint
from backend.sync.activation import activate, check_mailbox_match, refuse_if_held

log = logging.getLogger(__name__)
bp = Blueprint("auth_google", __name__, url_prefix="/auth/google")

PROVIDER = "google"
# The PKCE verifier of the sign-in in progress, sealed with the secret box.
VERIFIER_SESSION_KEY = "google:verifier"
_UNAVAILABLE = "Google could not be reached. Try again in a moment."


def google_auth() -> GoogleAuth:
    """The Google OAuth client, built from the settings in ``create_app``."""
    return services().clients.google_auth


def _require_configured() -> None:
    require_configured(services().settings.google_configured, PROVIDER, "Gmail")


@bp.get("/start")
def start() -> Any:
    """Begin consent: the dialog's user from the ticket, our state and PKCE, then Google's consent screen."""
    try:
        _require_configured()
        user = dialog_user(PROVIDER)
        try:
            refuse_if_held(services().store, user.id)  # before Google asks for consent
        except SetupFailed as exc:
            raise DialogError(exc.code, exc.message, 403) from None
    except DialogError as exc:
        return dialog_error(exc)
    state = begin_state(PROVIDER, uid=user.id)
    verifier, challenge = pkce_pair()
    session[VERIFIER_SESSION_KEY] = services().box.encrypt(verifier)
    return redirect(google_auth().authorization_url(state, challenge, login_hint=user.addin_mailbox), code=302)


@bp.get("/callback")
def callback() -> Response:
    """Finish consent: check everything, then activate sync (nothing is stored before that)."""
    return finish_dialog(_callback, log, "google consent")


def _callback() -> Response:
    _require_configured()
    ours = finish_state(PROVIDER)
    verifier = unseal_session(VERIFIER_SESSION_KEY)
    store = services().store
    settings = services().settings
    user = flow_user(ours)
    params = request.args.to_dict()
    if params.get("error"):
        failure = consent_error(params["error"], params.get("error_description", ""))
        raise DialogError(failure.code, failure.message)
    if not params.get("code"):
        raise DialogError("code_missing", "Google did not return a sign-in code. Try again.")
    auth = google_auth()
    # Revoking a refresh token ends the whole grant of that account and client at Google: a failed
    # reconnect must not take the person's working connection with it (same account, same grant).
    connected = store.secrets.get("mailbox", user.id, REFRESH_SECRET) is not None

    def discard(refresh_token: str, same_account: bool = True) -> None:
        """Forget a fresh grant this answer will not keep: revoked unless it may be the working one's."""
        if not (connected and same_account):
            auth.revoke(refresh_token)

    try:
        grant = auth.redeem(params["code"], verifier)
    except SetupFailed as exc:
        raise DialogError(exc.code, exc.message) from None
    except Unavailable:
        raise DialogError("google_unavailable", _UNAVAILABLE, 502) from None
    try:
        identity = google_identity(settings, grant.access_token, session=auth.session)
    except AuthRevoked:
        discard(grant.refresh_token)
        raise DialogError("google_refused", "Google refused to show this mailbox. Make sure Gmail is turned on for "
                                            "your account, then try again.") from None
    except (Unavailable, Throttled):
        discard(grant.refresh_token)
        raise DialogError("google_unavailable", _UNAVAILABLE, 502) from None
    except SetupFailed as exc:
        discard(grant.refresh_token)  # nothing is stored: the token must not outlive this answer
        raise DialogError(exc.code, exc.message) from None
    try:
        check_mailbox_match(user.addin_mailbox, identity)
    except SetupFailed as exc:
        # Another account (its own grant, nothing to do with the working connection): revoked.
        discard(grant.refresh_token, same_account=False)
        raise DialogError(exc.code, exc.message) from None
    try:
        mailbox = activate(store, user, PROVIDER, identity, grant.connection("consent"),
                           {REFRESH_SECRET: grant.refresh_token})
    except SetupFailed as exc:  # held off by an administrator: nothing was stored, the fresh grant is let go
        discard(grant.refresh_token)
        raise DialogError(exc.code, exc.message, 403) from None
    enqueue_sync(mailbox.id, interactive=True)
    log.info("google consent uid=%s mid=%s token=%s", user.id, mailbox.id, fingerprint(grant.refresh_token))
    return dialog_result(
        {"status": "ok", "provider": PROVIDER, "mailbox": identity.primary},
        heading="Gmail is connected",
        message="Sync is running — every 30 minutes. You can close this window.",
    )
