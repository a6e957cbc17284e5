"""Entra ID answers as domain errors: whose problem a refused sign-in or token request is.

A refused refresh (``invalid_grant``, ``interaction_required``) is :class:`AuthRevoked`, a refusal
of our app's own credentials (``invalid_client``, ``unauthorized_client``: an expired secret)
:class:`ServiceMisconfigured` (transient, never the user's fault), a network failure
:class:`Unavailable`, and a consent problem a :class:`SetupFailed` whose ``code`` the dialog shows.
Tokens never reach a log or an exception message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests

from backend.config import Settings
from backend.connectors.graph.entra import GRAPH_SCOPES
from backend.errors import AuthRevoked, ServiceMisconfigured, SetupFailed, Unavailable

log = logging.getLogger(__name__)

_AADSTS_RE = re.compile(r"AADSTS(\d{5,6})")
# AADSTS codes that mean "an administrator must approve this app first".
ADMIN_APPROVAL_CODES = frozenset({"65001", "90094", "90095", "90099"})
# AADSTS65004: the person declined consent on the consent screen.
DECLINED_CODES = frozenset({"65004"})
# Errors from a refresh or silent call that only the person can fix.
REVOKED_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})
# Errors that refuse *our app* (expired or wrong client secret, app disabled): every mailbox would
# fail alike, and no person can fix it by reconnecting. Transient for the run, never counted.
APP_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
# ...except "the application was not found in the directory": that tenant removed the app (or its
# admin consent), which the tenant's people must redo; other tenants are unaffected.
TENANT_REMOVED_APP_CODES = frozenset({"700016"})


@contextmanager
def signin_reachable() -> Iterator[None]:
    """Turn a network failure while talking to Microsoft sign-in into :class:`Unavailable`."""
    try:
        yield
    except requests.RequestException as exc:
        raise Unavailable(f"Microsoft sign-in could not be reached ({type(exc).__name__}).") from None


def aadsts_code(description: str | None) -> str:
    """The AADSTS number in an Entra error description ("" when there is none)."""
    match = _AADSTS_RE.search(description or "")
    return match.group(1) if match else ""


def needs_admin_approval(error: str, description: str | None) -> bool:
    """True when Entra says an administrator must approve the app (tenant consent policy)."""
    return error == "consent_required" or aadsts_code(description) in ADMIN_APPROVAL_CODES


def admin_approval_message(settings: Settings) -> str:
    """What to tell the person to ask of their Microsoft 365 administrator."""
    return (
        "Your organisation requires an administrator to approve Sidebar Sync before you can connect "
        "your mailbox. Ask your Microsoft 365 administrator to grant admin consent to the app with "
        f"client ID {settings.MS_CLIENT_ID} for the permissions {', '.join(GRAPH_SCOPES)} "
        f"(they can do it at {settings.PUBLIC_BASE_URL}/auth/microsoft/admin-consent), then try again."
    )


def consent_error(settings: Settings, error: str, description: str) -> SetupFailed:
    """What the consent dialog shows for an error answer to the auth-code redemption."""
    code = aadsts_code(description)
    if needs_admin_approval(error, description):
        return SetupFailed("admin_approval_required", admin_approval_message(settings))
    if error == "access_denied" or code in DECLINED_CODES:
        return SetupFailed("consent_denied", "You did not accept the permissions, so Sidebar Sync cannot read "
                                             "your mailbox. Connect again and choose Accept to start sync.")
    if error == "invalid_grant":
        return SetupFailed("code_rejected", "Microsoft refused the sign-in code (it was used, expired or issued "
                                            "to another app). Start again from the add-in.")
    if error in {"invalid_client", "unauthorized_client"}:
        return SetupFailed("app_misconfigured", "Microsoft refused this server's app credentials. Contact your "
                                                "administrator.")
    suffix = f" (AADSTS{code})" if code else ""
    return SetupFailed("microsoft_error", f"Microsoft did not complete the sign-in{suffix}. Try again.")


def obo_error(result: Mapping[str, Any]) -> Exception:
    """The domain error for an error answer to an on-behalf-of request."""
    error = str(result.get("error", ""))
    description = str(result.get("error_description", ""))
    suberror = str(result.get("suberror", ""))
    if error in {"interaction_required", "consent_required"} or suberror == "consent_required" or \
            aadsts_code(description) in ADMIN_APPROVAL_CODES:
        return SetupFailed("consent_required", "Connect Microsoft 365 once to allow Sidebar Sync to read "
                                               "your mailbox.")
    if error in {"temporarily_unavailable", "server_error"}:
        return Unavailable("Microsoft sign-in is temporarily unavailable.")
    code = aadsts_code(description)
    return SetupFailed("obo_refused", "Microsoft refused to extend the add-in's sign-in to your mailbox"
                                      + (f" (AADSTS{code})." if code else "."))


def token_from_result(result: dict[str, Any] | None, who: str) -> str:
    """The access token of a silent/client result, or the domain error it stands for."""
    if result is None:
        raise AuthRevoked("There is no usable Microsoft sign-in for this mailbox. Connect Microsoft 365 again.")
    if "error" in result:
        error = str(result.get("error", ""))
        code = aadsts_code(str(result.get("error_description", "")))
        suffix = f" (AADSTS{code})" if code else ""
        if error in APP_ERRORS and code not in TENANT_REMOVED_APP_CODES:
            log.error("microsoft refused this server's app credentials (check MS_CLIENT_ID/MS_CLIENT_SECRET) "
                      "%s error=%s%s", who, error, suffix)
            raise ServiceMisconfigured(f"Microsoft refused this server's app credentials ({error}{suffix}); "
                                       "an administrator must renew them. Sync continues once they do.")
        if error in REVOKED_ERRORS or error in APP_ERRORS:
            log.warning("microsoft token refused %s error=%s%s", who, error, suffix)
            raise AuthRevoked(f"Microsoft 365 no longer accepts the mailbox connection ({error}{suffix}). "
                              "Connect Microsoft 365 again.")
        raise Unavailable(f"Microsoft sign-in failed for now ({error}{suffix}).")
    token = result.get("access_token")
    if not token:
        raise Unavailable("Microsoft sign-in returned no access token.")
    return str(token)
