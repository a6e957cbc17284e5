"""Microsoft 365: the consent dialog, tenant-wide admin consent, and sync started on-behalf-of.

``/auth/microsoft/start?ticket=...`` (opened by the task pane's dialog with the URL ``POST
/api/dialog`` returned) runs msal's auth-code flow against ``MS_AUTHORITY``; our signed, single-use
state (:func:`begin_state`) is the state msal sends, and msal's flow (PKCE verifier, nonce) is kept
encrypted in the dialog's session. ``/auth/microsoft/callback`` checks our state (signature, this
window, used once), lets msal check its state and nonce, redeems the code, reads the account through
the Graph connector, checks the mailbox match and the tenant, and only then activates sync, so an
earlier working connection survives every failure.

``/auth/microsoft/admin-consent`` first has the administrator sign in with ``prompt=admin_consent``
(the same callback URL, told apart by its state): only an administrator can finish it, and it proves
the tenant they are of. It then sends them to Entra's
admin-consent endpoint for that tenant; its return (``/auth/microsoft/admin-consent/callback``)
must name the same tenant, proves the consent with a client-credential token and records it
(``backend.store.tenants``). The answer's ``tenant`` alone proves nothing: anyone can write it, and
a client-credential token only shows that *some* administrator of that tenant consented.

Sync started on-behalf-of right after the Salesforce login is :mod:`backend.sync.microsoft`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, redirect, request, session

from backend.auth.common import (
    SEALED_NOT_OURS,
    DialogError,
    begin_state,
    bound_dialog_starts,
    dialog_error,
    dialog_result,
    dialog_user,
    finish_dialog,
    finish_state,
    flow_user,
    redeem_ticket,
    require_configured,
    state_flow,
    unseal_session,
)
from backend.connectors.graph import (
    CACHE_SECRET,
    MULTI_TENANT,
    MicrosoftAuth,
    check_app_only,
    default_tenant,
    graph_identity,
    valid_tenant,
)
from backend.errors import AuthRevoked, SetupFailed, Throttled, Unavailable
from backend.extensions import services
from backend.jobs.sync import enqueue_sync
from backend.security.crypto import fingerprint
from backend.store.org_access import TenantTaken
from backend.store.users import User
from backend.sync.activation import activate, check_mailbox_match, refuse_if_held
from backend.sync.org_access import resume_org

log = logging.getLogger(__name__)
bp = Blueprint("auth_microsoft", __name__, url_prefix="/auth/microsoft")

PROVIDER = "microsoft"
ADMIN_FLOW = "microsoft-admin"
# The administrator's sign-in before admin consent (it returns to the consent dialog's callback).
ADMIN_SIGNIN_FLOW = "microsoft-admin-signin"
# msal's flow dict (PKCE verifier, nonce) for the sign-in in progress, sealed with the secret box.
FLOW_SESSION_KEY = "microsoft:flow"
ADMIN_FLOW_SESSION_KEY = "microsoft:admin-flow"
_UNAVAILABLE = "Microsoft could not be reached. Try again in a moment."


def microsoft_auth() -> MicrosoftAuth:
    """The Entra ID app client, built from the settings in ``create_app``."""
    return services().clients.microsoft_auth


def naa_tenant(user: User) -> str:
    """The tenant the add-in's mailbox was proven in (Nested App Authentication), or ""."""
    kind, _, rest = user.addin_identity.partition(":")
    return rest.split(":", 1)[0] if kind == "naa" else ""


def _require_configured() -> None:
    require_configured(services().settings.microsoft_configured, PROVIDER, "Microsoft 365")


@bp.get("/start")
def start() -> Any:
    """Begin consent: the dialog's user from the ticket, our state, msal's flow, then Microsoft."""
    try:
        _require_configured()
        user = dialog_user(PROVIDER)
        try:
            refuse_if_held(services().store, user.id)  # before Microsoft asks for consent
        except SetupFailed as exc:
            raise DialogError(exc.code, exc.message, 403) from None
        state = begin_state(PROVIDER, uid=user.id)
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
    """Finish consent: check everything, then activate sync (nothing is stored before that).

    The administrator's sign-in before admin consent returns here too (one registered redirect URI).
    """
    if state_flow() == ADMIN_SIGNIN_FLOW:
        return finish_dialog(_admin_signed_in, log, "microsoft admin sign-in")
    return finish_dialog(_callback, log, "microsoft consent")


def _sealed_flow(key: str = FLOW_SESSION_KEY) -> dict[str, Any]:
    sealed = unseal_session(key)
    try:
        flow = json.loads(sealed)
    except ValueError:
        raise DialogError("state_invalid", SEALED_NOT_OURS) from None
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
    user = flow_user(ours)
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
    try:
        mailbox = activate(store, user, PROVIDER, identity, grant.connection("consent"), {CACHE_SECRET: grant.cache})
    except SetupFailed as exc:  # held off by an administrator (nothing was stored)
        raise DialogError(exc.code, exc.message, 403) from None
    enqueue_sync(mailbox.id, interactive=True)
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


def _bind_org(tenant: str, by: str) -> None:
    """Started by an org's admin from the console: the org's mass activation uses this tenant (a fix resumes all)."""
    store = services().store
    admin = store.users.get(by) if by else None
    if admin is None or not admin.is_admin:
        return
    try:
        resumed = store.org_access.connect_microsoft(admin.org_id, tenant, by)
    except TenantTaken:
        raise DialogError("tenant_taken", "This Microsoft 365 organisation is connected to another Salesforce "
                                          "organisation in Sidebar Sync. Disconnect it there first.", 409) from None
    if resumed:
        resume_org(store, admin.org_id, "microsoft")


def _taken_by_another_org(tenant: str, by: str) -> bool:
    """True when ``tenant`` is connected to an org other than that of the console admin ``by``."""
    store = services().store
    admin = store.users.get(by) if by else None
    owner = store.org_access.tenant_owner(tenant)
    return bool(admin and admin.is_admin and owner and owner != admin.org_id)


@bp.get("/admin-consent")
def admin_consent() -> Any:
    """Have a tenant administrator sign in (which proves their tenant), then consent (``?tenant=`` optional)."""
    settings = services().settings
    try:
        _require_configured()
        tenant = request.args.get("tenant", "").strip() or default_tenant(settings)
        if not valid_tenant(tenant):
            raise DialogError("invalid_input", "That is not a Microsoft 365 tenant id or domain.")
        by = ""
        if request.args.get("ticket"):
            by = redeem_ticket(PROVIDER, request.args.get("ticket", ""))
        # Anonymous, and each start writes a 15-minute dialog session and builds an msal app for the
        # tenant asked: bounded like the Salesforce start, before either.
        bound_dialog_starts()
        state = begin_state(ADMIN_SIGNIN_FLOW, by=by)
        try:
            flow = microsoft_auth().start_admin_signin(state, tenant)
        except Unavailable:
            raise DialogError("microsoft_unavailable", _UNAVAILABLE, 502) from None
    except DialogError as exc:
        return dialog_error(exc)
    session[ADMIN_FLOW_SESSION_KEY] = services().box.encrypt(json.dumps(flow))
    return redirect(str(flow["auth_uri"]), code=302)


def _admin_signed_in() -> Response:
    """The administrator signed in: their tenant is known, so send them to consent for exactly that one."""
    _require_configured()
    ours = finish_state(ADMIN_SIGNIN_FLOW)
    flow = _sealed_flow(ADMIN_FLOW_SESSION_KEY)
    if request.args.get("error"):
        # Declined, or not an administrator (only one can consent for the organisation).
        raise DialogError("admin_consent_denied", "Admin consent was not granted, so sync cannot be activated for "
                                                  "the whole organisation. A Global or Privileged Role administrator "
                                                  "must sign in and accept the permissions.")
    settings = services().settings
    try:
        tenant = microsoft_auth().signed_in_tenant(flow, request.args.to_dict())
    except SetupFailed as exc:
        raise DialogError(exc.code, exc.message) from None
    except (Unavailable, Throttled):
        raise DialogError("microsoft_unavailable", _UNAVAILABLE, 502) from None
    if settings.MS_ALLOWED_TENANTS and tenant not in settings.MS_ALLOWED_TENANTS:
        raise DialogError("tenant_not_allowed", "Your organisation's Microsoft tenant is not allowed to use this "
                                                "add-in.")
    by = str(ours.get("by", ""))
    if _taken_by_another_org(tenant, by):
        raise DialogError("tenant_taken", "This Microsoft 365 organisation is connected to another Salesforce "
                                          "organisation in Sidebar Sync. Disconnect it there first.", 409)
    state = begin_state(ADMIN_FLOW, by=by, tenant=tenant)
    return Response(status=302, headers={"Location": microsoft_auth().admin_consent_url(tenant, state)})


@bp.get("/admin-consent/callback")
def admin_consent_callback() -> Response:
    """Record a tenant's admin consent once a client-credential token proves it."""
    return finish_dialog(_admin_consent_callback, log, "microsoft admin consent")


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
    if tenant != str(ours.get("tenant", "")):
        # The tenant the administrator signed in to is the only one this consent may be for.
        raise DialogError("wrong_tenant", "The consent was given for another Microsoft 365 organisation than the "
                                          "one you signed in to. Start again from the console.")
    try:
        # The answer's parameters could be forged; an application token for the tenant cannot.
        check_app_only(microsoft_auth(), tenant)
    except AuthRevoked:
        raise DialogError("admin_consent_unconfirmed", "Microsoft does not confirm the consent for this organisation "
                                                       "yet. Wait a minute and try again.") from None
    except Unavailable:
        raise DialogError("microsoft_unavailable", _UNAVAILABLE, 502) from None
    _bind_org(tenant, str(ours.get("by", "")))
    services().store.tenants.record_consent(tenant, f"{settings.GRAPH_URL}/.default", str(ours.get("by", "")))
    log.info("microsoft admin consent recorded tenant=%s", tenant)
    return dialog_result(
        {"status": "ok", "provider": PROVIDER, "tenant_id": tenant, "admin_consent": True},
        heading="Sidebar Sync is approved for your organisation",
        message="Sync can now be activated for your users without a consent prompt. You can close this window.",
    )
