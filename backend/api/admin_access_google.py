"""The org's Google Workspace service account for mass activation (``/api/admin/connections/google``).

The administrator uploads the service account's JSON key (write-only: kept encrypted as an org
secret, never shown back) and the Workspace domain; saving proves it with a delegated token for
one address (the admin's own by default). The view says what the Workspace admin must authorise
(the client id and :data:`DELEGATED_SCOPES` under Security > API controls > Domain-wide delegation).
**Test** checks one mailbox; a Test that works after a breakage ends it and everyone it stopped
resumes from their cursors.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Response, jsonify

from backend.api.admin_auth import require_admin
from backend.api.blueprint import bp
from backend.api.errors import ApiError
from backend.api.sync import iso
from backend.api.validation import json_body, text_field
from backend.connectors.google.delegation import DELEGATED_SCOPES, SECRET_KEY, ServiceAccountKey, parse_key
from backend.connectors.google.directory import check_delegation
from backend.errors import ServiceMisconfigured, SetupFailed, Unavailable
from backend.extensions import services
from backend.sync.org_access import resume_org
from backend.sync.org_google import org_key
from backend.sync.org_providers import GOOGLE

MAX_BODY = 32 * 1024
MAX_DOMAINS = 20
_DOMAIN = re.compile(r"(?=.{3,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_ADDRESS = re.compile(r"[^@\s]{1,64}@[^@\s]{3,253}")
# What Google's refusals answer (anything else Google said is 502).
_STATUS = {"key_refused": 422, "delegation_not_authorised": 422, "mailbox_not_found": 422, "gmail_disabled": 422,
           "mailbox_mismatch": 422}


def _view(org_id: str) -> dict[str, Any]:
    store = services().store
    access = store.org_access.get(org_id)
    broken = access.broken.get(GOOGLE.name)
    connected = bool(access.google_client_id)
    return {"provider": GOOGLE.name, "connected": connected,
            "client_email": access.google_client_email or None, "client_id": access.google_client_id or None,
            "domain": access.google_domains[0] if access.google_domains else None,
            "domains": list(access.google_domains), "address": access.google_address or None,
            "key_saved": store.org_access.has_secret(org_id, SECRET_KEY),
            "connected_at": iso(access.google_connected_at),
            "state": "broken" if broken else ("ok" if connected else "not_connected"),
            "error": {"code": broken["code"], "message": broken["message"], "since": iso(broken["since"])}
            if broken else None,
            # What the Workspace admin enters under Security > API controls > Domain-wide delegation.
            "scopes": list(DELEGATED_SCOPES)}


def _key_field(data: dict[str, Any]) -> ServiceAccountKey:
    # ``key`` is the file's text; ``service_account`` (the CONTRACT's name) may be the parsed object too.
    raw = data.get("key", data.get("service_account"))
    if not isinstance(raw, str | dict) or not raw:
        raise ApiError(400, "invalid_input", "Upload the service account's JSON key.", field="key")
    try:
        return parse_key(raw)
    except SetupFailed as exc:
        raise ApiError(400, "invalid_input", exc.message, field="key") from None


def _domains_field(data: dict[str, Any]) -> tuple[str, ...]:
    text = text_field(data, "domain", max_len=2000, label="Domain")
    domains = tuple(dict.fromkeys(d.lower().strip(".") for d in re.split(r"[\s,]+", text) if d))
    if not domains or len(domains) > MAX_DOMAINS or not all(_DOMAIN.fullmatch(d) for d in domains):
        raise ApiError(400, "invalid_input", "Give your Google Workspace domain (for example example.com).",
                       field="domain")
    return domains


def _address_field(data: dict[str, Any], default: str, required: bool = False) -> str:
    address = text_field(data, "address", required=required, max_len=320, label="Address") or default
    if not _ADDRESS.fullmatch(address):
        raise ApiError(400, "invalid_input", "Give the email address of one mailbox to test with.", field="address")
    return address.lower()


def _prove(key: ServiceAccountKey, domains: tuple[str, ...], address: str) -> None:
    """A delegated token for ``address`` reads its Gmail profile, or the API error saying why not."""
    svc = services()
    try:
        check_delegation(svc.settings, key, domains, address, svc.clients.google_auth.session)
    except SetupFailed as exc:
        if exc.code == "address_outside_domain":
            raise ApiError(400, "invalid_input", exc.message, field="address") from None
        raise ApiError(_STATUS.get(exc.code, 502), exc.code, exc.message) from None
    except Unavailable as exc:
        raise ApiError(502, "google_unavailable", exc.message) from None


@bp.get("/admin/connections/google")
def admin_connection_google() -> Response:
    """The org's Google service account as the console shows it (never the key)."""
    caller = require_admin()
    return jsonify(_view(caller.user.org_id))


@bp.put("/admin/connections/google")
def admin_connection_google_put() -> Response:
    """Save the key after proving it (``{"key", "domain", "address"?}``; the address defaults to the admin's)."""
    caller = require_admin()
    data = json_body(max_bytes=MAX_BODY)
    unknown = set(data) - {"key", "service_account", "domain", "address"}
    if unknown:
        raise ApiError(400, "invalid_input", f"Unknown field: {', '.join(sorted(unknown))}.")
    key, domains = _key_field(data), _domains_field(data)
    address = _address_field(data, caller.user.email)
    _prove(key, domains, address)
    org_id = caller.user.org_id
    store = services().store
    store.org_access.put_secret(org_id, SECRET_KEY, key.text())
    store.org_access.connect_google(org_id, caller.user.id, domains, client_email=key.client_email,
                                    client_id=key.client_id, project_id=key.project_id, address=address)
    return jsonify(_view(org_id))


@bp.post("/admin/connections/google/check")
def admin_connection_google_check() -> Response:
    """Test: a delegated token reads ``{"address"}``'s mailbox; when it works again, people resume."""
    caller = require_admin()
    data = json_body()
    address = _address_field(data, "", required=True)
    svc = services()
    org_id = caller.user.org_id
    access = svc.store.org_access.get(org_id)
    try:
        key = org_key(svc.store, access)
    except ServiceMisconfigured:
        raise ApiError(409, "org_access_missing", GOOGLE.missing) from None
    try:
        _prove(key, access.google_domains, address)
    except ApiError as exc:
        if exc.status >= 500 or exc.code == "invalid_input":
            raise
        return jsonify({**_view(org_id), "check": "refused", "check_code": exc.code, "check_message": exc.message,
                        "resumed": 0})
    resumed = 0
    if svc.store.org_access.clear_broken(org_id, GOOGLE.name):
        resumed = resume_org(svc.store, org_id, GOOGLE.name)
    return jsonify({**_view(org_id), "check": "ok", "check_code": None, "check_message": None, "resumed": resumed})
