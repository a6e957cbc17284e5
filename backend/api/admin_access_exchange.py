"""The org's on-premises Exchange service account for mass activation (``/api/admin/connections/exchange``).

The administrator saves a service account holding the ApplicationImpersonation role (login,
password - write-only, kept encrypted as an org secret and never shown back - and an EWS URL, or
Autodiscover); **Test** checks it against one mailbox. A Test that works after a breakage ends it and
everyone it stopped resumes from their cursors.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from backend.api.admin_auth import require_admin
from backend.api.blueprint import bp
from backend.api.errors import ApiError
from backend.api.exchange import ews_url_field, login_field, password_field, setup_error
from backend.api.sync import iso
from backend.api.validation import json_body, text_field
from backend.connectors.exchange.connect import connect
from backend.connectors.exchange.impersonation import SECRET_PASSWORD, check_service_account
from backend.errors import SetupFailed
from backend.extensions import services
from backend.sync.org_access import resume_org
from backend.sync.org_providers import EXCHANGE


def _view(org_id: str) -> dict[str, Any]:
    store = services().store
    access = store.org_access.get(org_id)
    broken = access.broken.get(EXCHANGE.name)
    return {"provider": EXCHANGE.name, "connected": bool(access.exchange_login),
            "login": access.exchange_login or None, "ews_url": access.exchange_ews_url or None,
            "autodiscovered": access.exchange_autodiscovered,
            "password_saved": store.org_access.has_secret(org_id, SECRET_PASSWORD),
            "connected_at": iso(access.exchange_connected_at),
            "state": "broken" if broken else ("ok" if access.exchange_login else "not_connected"),
            "error": {"code": broken["code"], "message": broken["message"], "since": iso(broken["since"])}
            if broken else None}


@bp.get("/admin/connections/exchange")
def admin_connection_exchange() -> Response:
    """The org's Exchange service account as the console shows it (never the password)."""
    caller = require_admin()
    return jsonify(_view(caller.user.org_id))


@bp.put("/admin/connections/exchange")
def admin_connection_exchange_put() -> Response:
    """Save the service account after proving its login (``{"login", "password", "ews_url"?, "address"?}``)."""
    caller = require_admin()
    data = json_body()
    unknown = set(data) - {"login", "password", "ews_url", "address"}
    if unknown:
        raise ApiError(400, "invalid_input", f"Unknown field: {', '.join(sorted(unknown))}.")
    login, password, ews_url = login_field(data), password_field(data), ews_url_field(data)
    # Autodiscover needs an address of the org when the login is DOMAIN\\user.
    hint = text_field(data, "address", required=False, max_len=320, label="Address") or caller.user.email
    svc = services()
    try:
        found = connect(svc.settings, login, password, ews_url or None, email_hint=hint,
                        resolver=svc.clients.dns_resolver)
    except SetupFailed as exc:
        raise setup_error(exc) from None
    org_id = caller.user.org_id
    svc.store.org_access.put_secret(org_id, SECRET_PASSWORD, password)
    svc.store.org_access.connect_exchange(org_id, caller.user.id, login=login, ews_url=found.ews_url,
                                          auth_type=found.auth_type, version=found.version,
                                          autodiscovered="1" if found.autodiscovered else "0")
    return jsonify(_view(org_id))


@bp.post("/admin/connections/exchange/check")
def admin_connection_exchange_check() -> Response:
    """Test: the service account may impersonate ``{"address"}``; when it works again, people resume."""
    caller = require_admin()
    data = json_body()
    address = text_field(data, "address", max_len=320, label="Address")
    if "@" not in address:
        raise ApiError(400, "invalid_input", "Give the email address of one mailbox to test with.", field="address")
    svc = services()
    org_id = caller.user.org_id
    access = svc.store.org_access.get(org_id)
    password = svc.store.org_access.get_secret(org_id, SECRET_PASSWORD)
    if not access.exchange_login or not password:
        raise ApiError(409, "org_access_missing", EXCHANGE.missing)
    resumed = 0
    try:
        check_service_account(svc.settings, access.exchange_login, password, access.exchange_ews_url, address,
                              resolver=svc.clients.dns_resolver)
    except SetupFailed as exc:
        return jsonify({**_view(org_id), "check": "refused", "check_code": exc.code, "check_message": exc.message,
                        "resumed": 0})
    if svc.store.org_access.clear_broken(org_id, EXCHANGE.name):
        resumed = resume_org(svc.store, org_id, EXCHANGE.name)
    return jsonify({**_view(org_id), "check": "ok", "check_code": None, "check_message": None, "resumed": resumed})
