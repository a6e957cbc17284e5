"""Microsoft 365: the consent dialog, tenant-wide admin consent, and sync started on-behalf-of.

``/auth/microsoft/start?ticket=...`` (opened by the task pane's dialog with the URL ``POST
/api/dialog`` returned) runs msal's auth-code flow against ``MS_AUTHORITY``; our signed, single-use
state (:func:`begin_state`) is the state msal sends, and msal's flow (PKCE verifier, nonce) is kept
encrypted in the dialog's session. ``/auth/microsoft/callback`` checks our state (signature, this
window, used once), lets msal check its state and nonce, redeems the code, reads the account through
the Graph connector, checks the mailbox match and the tenant, and only then activates sync, so an
earlier working connection survives every failure.

``/auth/microsoft/admin-consent`` sends a tenant administrator to Entra's admin-consent endpoint;
its return (``/auth/microsoft/admin-consent/callback``) proves the consent with a client-credential
token and records it (``backend.store.tenants``).

:func:`activate_on_behalf_of` runs after a login whose add-in mailbox was proven with a Nested App
Authentication token: if the person (or their administrator) already consented, sync starts with
no further step; if not, sync stays not activated and ``GET /api/sync`` suggests Microsoft consent.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, redirect, request, session

from backend.auth.common import DialogError, begin_state, dialog_error, dialog_result, finish_state, redeem_ticket
from backend.connectors.errors import AuthRevoked, SetupFailed, Throttled, Unavailable
from backend.connectors.graph import graph_identity
from backend.connectors.microsoft_auth import (
    CACHE_SECRET,
    MULTI_TENANT,
    AppOnlyTokens,
    MicrosoftAuth,
    check_app_only,
    default_tenant,
    valid_tenant,
)
from backend.extensions import services
from backend.security.crypto import DecryptError, fingerprint
from backend.security.identity import VerifiedMailbox
from backend.security.proofs import AFTER_LOGIN_HOOKS
from backend.store.mailboxes import SyncState
from backend.store.users import User
from backend.sync.activation import activate, check_mailbox_match

log = logging.getLogger(__name__)
bp = Blueprint("auth_microsoft", __name__, url_prefix="/auth/microsoft")

PROVIDER = "microsoft"
ADMIN_FLOW = "microsoft-admin"
# msal's flow dict (PKCE verifier, nonce) for the sign-in in progress, sealed with the secret box.
FLOW_SESSION_KEY = "microsoft:flow"
_UNAVAILABLE = "Microsoft could not be reached. Try again in a moment."


def microsoft_auth() -> MicrosoftAuth:
    """The Entra ID app client (injectable through ``services().clients``)."""
    return services().client("microsoft_auth", MicrosoftAuth)


def naa_tenant(user: User) -> str:
    """The tenant the add-in's mailbox was proven in (Nested App Authentication), or ""."""
    kind, _, rest = user.addin_identity.partition(":")
    return rest.split(":", 1)[0] if kind == "naa" else ""


def _require_configured() -> None:
    if not services().settings.microsoft_configured:
        raise DialogError("microsoft_not_configured",
                          "Microsoft 365 sign-in is not configured on this server. Contact your administrator.", 503)


@bp.get("/start")
def start() -> Any:
    """Begin consent: the dialog's user from the ticket, our state, msal's flow, then Microsoft."""
    try:
        _require_configured()
        uid = redeem_ticket(PROVIDER, request.args.get("ticket", ""))
        user = services().store.users.get(uid)
        if user is None:
            raise DialogError("ticket_invalid", "This sign-in link is not valid. Start again from the add-in.", 401)
        state = begin_state(PROVIDER, uid=uid)
        try:
            flow = microsoft_auth().start_consent(state, login_hint=user.addin_mailbox)
        except Unavailable:
            raise DialogError("microsoft_unavailable", _UNAVAILABLE, 502) from None
    except DialogError as exc:
        return dialog_error(exc)
    session[FLOW_SESSION_KEY] = services().box.encrypt(json.dumps(flow))
    return redirect(str(flow["auth_uri"]), code=302)


@bp.get("/callback")
def callback() -> Response:
    """Finish consent: check everything, then activate sync (nothing is stored before that)."""
    try:
        return _callback()
    except DialogError as exc:
        log.info("microsoft consent failed code=%s", exc.code)
        return dialog_error(exc)


def _sealed_flow() -> dict[str, Any]:
    sealed = session.pop(FLOW_SESSION_KEY, None)
    if not isinstance(sealed, str):
        raise DialogError("state_mismatch", "This sign-in was started in another window or session. "
                                            "Start again from the add-in.")
    try:
        flow = json.loads(services().box.decrypt(sealed))
    except (DecryptError, ValueError):
        raise DialogError("state_invalid", "The sign-in answer was not for this sign-in. Start again.") from None
    if not isinstance(flow, dict) or flow.get("state") != request.args.get("state"):
        # Two sign-ins in one browser session: this answer belongs to the other one.
        raise DialogError("state_mismatch", "This sign-in was started in another window. Start again from the add-in.")
    return flow


def _callback() -> Response:
    _require_configured()
    ours = finish_state(PROVIDER)
    flow = _sealed_flow()
    store = services().store
    settings = services().settings
    user = store.users.get(str(ours.get("uid", "")))
    if user is None:
        raise DialogError("ticket_invalid", "Your add-in session ended. Start again from the add-in.", 401)
    params = request.args.to_dict()
    if not params.get("code") and not params.get("error"):
        raise DialogError("code_missing", "Microsoft did not return a sign-in code. Try again.")
    auth = microsoft_auth()
    try:
        grant = auth.finish_consent(flow, params)
        _check_tenant(user, grant.tenant_id)
        identity = graph_identity(settings, grant.access_token, session=auth.session)
        check_mailbox_match(user.addin_mailbox, identity)
    except SetupFailed as exc:
        raise DialogError(exc.code, exc.message) from None
    except AuthRevoked:
        raise DialogError("microsoft_refused", "Microsoft 365 refused to show this mailbox. Try again, or ask your "
                                               "administrator whether the mailbox is enabled.") from None
    except (Unavailable, Throttled):
        raise DialogError("microsoft_unavailable", _UNAVAILABLE, 502) from None
    mailbox = activate(user, PROVIDER, identity, grant.connection("consent"), {CACHE_SECRET: grant.cache})
    log.info("microsoft consent uid=%s tenant=%s mid=%s cache=%s", user.id, grant.tenant_id, mailbox.id,
             fingerprint(grant.cache))
    return dialog_result(
        {"status": "ok", "provider": PROVIDER, "mailbox": identity.primary},
        heading="Microsoft 365 is connected",
        message="Sync is running — every 30 minutes. You can close this window.",
    )


def _check_tenant(user: User, tenant_id: str) -> None:
    """The account must belong to the tenant the add-in runs in (and an allowed one)."""
    settings = services().settings
    if settings.MS_ALLOWED_TENANTS and tenant_id not in settings.MS_ALLOWED_TENANTS:
        raise SetupFailed("tenant_not_allowed",
                          "Your organisation's Microsoft tenant is not allowed to use this add-in.")
    expected = naa_tenant(user)
    if expected and tenant_id != expected:
        raise SetupFailed(
            "wrong_tenant",
            f"You signed in with an account of another Microsoft 365 organisation than the one Outlook runs in. "
            f"Sign in with your {user.addin_mailbox or 'work'} account.",
        )


# --- tenant-wide admin consent ---------------------------------------------------------------


@bp.get("/admin-consent")
def admin_consent() -> Any:
    """Send a tenant administrator to Entra's admin-consent endpoint (``?tenant=`` optional)."""
    settings = services().settings
    try:
        _require_configured()
        tenant = request.args.get("tenant", "").strip() or default_tenant(settings)
        if not valid_tenant(tenant):
            raise DialogError("invalid_input", "That is not a Microsoft 365 tenant id or domain.")
        by = ""
        if request.args.get("ticket"):
            by = redeem_ticket(PROVIDER, request.args.get("ticket", ""))
    except DialogError as exc:
        return dialog_error(exc)
    state = begin_state(ADMIN_FLOW, by=by)
    return redirect(microsoft_auth().admin_consent_url(tenant, state), code=302)


@bp.get("/admin-consent/callback")
def admin_consent_callback() -> Response:
    """Record a tenant's admin consent once a client-credential token proves it."""
    try:
        return _admin_consent_callback()
    except DialogError as exc:
        log.info("microsoft admin consent failed code=%s", exc.code)
        return dialog_error(exc)


def _admin_consent_callback() -> Response:
    _require_configured()
    ours = finish_state(ADMIN_FLOW)
    settings = services().settings
    if request.args.get("error"):
        raise DialogError("admin_consent_denied", "Admin consent was not granted, so sync cannot be activated for "
                                                  "the whole organisation. A Global or Privileged Role administrator "
                                                  "must accept the permissions.")
    tenant = request.args.get("tenant", "").strip()
    if request.args.get("admin_consent", "").lower() != "true" or not valid_tenant(tenant) or tenant in MULTI_TENANT:
        raise DialogError("admin_consent_denied", "Microsoft did not confirm the admin consent. Try again.")
    if settings.MS_ALLOWED_TENANTS and tenant not in settings.MS_ALLOWED_TENANTS:
        raise DialogError("tenant_not_allowed",
                          "Your organisation's Microsoft tenant is not allowed to use this add-in.")
    try:
        # The answer's parameters could be forged; an application token for the tenant cannot.
        check_app_only(microsoft_auth(), tenant)
    except AuthRevoked:
        raise DialogError("admin_consent_unconfirmed", "Microsoft does not confirm the consent for this organisation "
                                                       "yet. Wait a minute and try again.") from None
    except Unavailable:
        raise DialogError("microsoft_unavailable", _UNAVAILABLE, 502) from None
    services().store.tenants.record_consent(tenant, f"{settings.GRAPH_URL}/.default", str(ours.get("by", "")))
    log.info("microsoft admin consent recorded tenant=%s", tenant)
    return dialog_result(
        {"status": "ok", "provider": PROVIDER, "tenant_id": tenant, "admin_consent": True},
        heading="Sidebar Sync is approved for your organisation",
        message="Sync can now be activated for your users without a consent prompt. You can close this window.",
    )


# --- on-behalf-of after the Salesforce login -------------------------------------------------


def activate_on_behalf_of(user: User, verified: VerifiedMailbox) -> None:
    """After a login proven by NAA: start Microsoft 365 sync when consent exists; otherwise do nothing."""
    svc = services()
    if verified.kind != "naa" or not verified.assertion or not svc.settings.microsoft_configured:
        return
    mailbox = svc.store.mailboxes.ensure(user.id, user.org_id)
    if mailbox.state is not SyncState.NOT_ACTIVATED:
        return  # running, paused, deactivated by choice, or waiting for the person: theirs to change
    auth = microsoft_auth()
    try:
        grant = auth.on_behalf_of(verified.assertion, verified.tenant_id)
        if grant.tenant_id != verified.tenant_id:
            log.warning("microsoft on-behalf-of answered for another tenant uid=%s", user.id)
            return
        identity = graph_identity(svc.settings, grant.access_token, session=auth.session)
        check_mailbox_match(verified.address, identity)
    except SetupFailed as exc:
        if exc.code == "consent_required" and svc.store.tenants.has_consent(verified.tenant_id):
            _activate_app_only(user, verified, auth)
            return
        log.info("microsoft on-behalf-of not possible (%s) uid=%s", exc.code, user.id)
        return
    except (AuthRevoked, Unavailable, Throttled) as exc:
        log.warning("microsoft on-behalf-of failed (%s) uid=%s", exc.code, user.id)
        return
    activate(user, PROVIDER, identity, grant.connection("on_behalf_of"), {CACHE_SECRET: grant.cache})
    log.info("microsoft sync activated on-behalf-of uid=%s tenant=%s", user.id, grant.tenant_id)


def _activate_app_only(user: User, verified: VerifiedMailbox, auth: MicrosoftAuth) -> None:
    """Tenant-wide consent exists: read the mailbox with application permissions."""
    object_id = verified.identity.rsplit(":", 1)[-1]
    try:
        token = AppOnlyTokens(auth, verified.tenant_id).access_token()
        identity = graph_identity(services().settings, token, f"/users/{quote(object_id, safe='')}", auth.session)
        check_mailbox_match(verified.address, identity)
    except (SetupFailed, AuthRevoked, Unavailable, Throttled) as exc:
        log.warning("microsoft app-only activation failed (%s) uid=%s", exc.code, user.id)
        return
    connection = {"app_only": True, "tenant_id": verified.tenant_id, "user_id": object_id, "via": "admin_consent"}
    activate(user, PROVIDER, identity, connection, {})
    log.info("microsoft sync activated app-only uid=%s tenant=%s", user.id, verified.tenant_id)


if activate_on_behalf_of not in AFTER_LOGIN_HOOKS:
    AFTER_LOGIN_HOOKS.append(activate_on_behalf_of)
