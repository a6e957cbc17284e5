"""Mass activation and the org's mailbox access (``/api/admin/activate``, ``/activations``, ``/connections``).

An administrator posts addresses (JSON, or a CSV upload: one address a line, or a header ``email``)
or ``"all"``; a job decides each person (:mod:`backend.sync.mass`) and the console polls its progress.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from flask import Response, jsonify, request

from backend.api.admin_auth import Caller, require_admin
from backend.api.blueprint import bp
from backend.api.errors import ApiError
from backend.api.sync import iso
from backend.api.validation import json_body
from backend.auth.common import issue_ticket
from backend.extensions import services
from backend.jobs.activation import ALL, enqueue_activation, job_lost
from backend.store.activations import Activation
from backend.sync.mass import deactivate_mass
from backend.sync.org_access import disconnect_org, resume_org
from backend.sync.org_providers import MICROSOFT, ORG_PROVIDERS

MAX_PEOPLE = 10_000
MAX_BODY = 1024 * 1024
_ADDRESS = re.compile(r"[^@\s,;<>\"']{1,64}@[^@\s,;<>\"']{1,255}\.[^@\s,;<>\"'.]{2,63}")
PROVIDERS = ("microsoft", "exchange", "google")


def _delimiter(text: str) -> str:
    """``;`` when the first line uses it more than commas (Excel's CSV in locales with a decimal comma), else ``,``."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return ";" if first.count(";") > first.count(",") else ","


def _addresses_from_csv(text: str) -> list[str]:
    """One address a line, or a CSV (comma or semicolon separated) with an ``email`` column."""
    try:
        # newline="": the csv module reads \r, \n and \r\n line ends itself (a lone \r raised before).
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
        rows = [r for r in reader if any(c.strip() for c in r)]
    except csv.Error as exc:  # a field past the csv module's limit, a NUL byte...: not a list of people
        raise ApiError(400, "invalid_input", f"The file is not a CSV we can read ({exc}).") from None
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    if "email" in header:
        column = header.index("email")
        return [r[column].strip() for r in rows[1:] if len(r) > column and r[column].strip()]
    return [r[0].strip() for r in rows if r and r[0].strip()]


def _request_people() -> tuple[str, list[str]]:
    """(provider, addresses or [ALL]) from a JSON body, a CSV body or a CSV file upload."""
    if request.files.get("file") is not None:
        upload = request.files["file"]
        raw = upload.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise ApiError(413, "payload_too_large", f"The file is larger than {MAX_BODY} bytes.")
        return request.form.get("provider", "microsoft"), _addresses_from_csv(raw.decode("utf-8-sig", "replace"))
    if (request.mimetype or "") == "text/csv":
        if (request.content_length or 0) > MAX_BODY:
            raise ApiError(413, "payload_too_large", f"The file is larger than {MAX_BODY} bytes.")
        # utf-8-sig like the upload: Excel starts its UTF-8 CSV with a byte-order mark, which would
        # otherwise stick to the first header or address.
        text = request.get_data().decode("utf-8-sig", "replace")
        return request.args.get("provider", "microsoft"), _addresses_from_csv(text)
    data = json_body(max_bytes=MAX_BODY)
    unknown = set(data) - {"provider", "users"}
    if unknown:
        raise ApiError(400, "invalid_input", f"Unknown field: {', '.join(sorted(unknown))}.")
    users = data.get("users")
    if users == "all":
        return str(data.get("provider", "")), [ALL]
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise ApiError(400, "invalid_input", 'users must be a list of email addresses or "all".', field="users")
    return str(data.get("provider", "")), [u.strip() for u in users]


@bp.post("/admin/activate")
def admin_activate() -> Any:
    """Start a mass activation: ``{"provider": "microsoft", "users": [...] | "all"}`` or CSV; 202 ``{"job_id"}``."""
    caller = require_admin()
    provider, addresses = _request_people()
    if provider not in PROVIDERS:
        raise ApiError(400, "invalid_input", f"provider must be one of: {', '.join(PROVIDERS)}.", field="provider")
    if provider not in ORG_PROVIDERS:
        supported = ", ".join(p.label for p in ORG_PROVIDERS.values())
        raise ApiError(400, "provider_not_supported", f"Mass activation supports {supported} for now.",
                       field="provider")
    if addresses != [ALL]:
        bad = [a for a in addresses if not _ADDRESS.fullmatch(a)]
        if bad:
            raise ApiError(400, "invalid_input", f"Not an email address: {bad[0][:100]}.", field="users")
        addresses = list(dict.fromkeys(a.lower() for a in addresses))
        if not addresses:
            raise ApiError(400, "invalid_input", "Give at least one email address.", field="users")
        if len(addresses) > MAX_PEOPLE:
            raise ApiError(413, "too_many_people", f"Activate at most {MAX_PEOPLE} people at a time.",
                           field="users")
    svc = services()
    jwt = svc.clients.salesforce_jwt
    if jwt is None or not jwt.configured:
        raise ApiError(409, "salesforce_jwt_not_configured", "This server has no SALESFORCE_JWT_PRIVATE_KEY, so it "
                       "cannot sign people in to Salesforce without their own login.")
    access = svc.store.org_access.get(caller.user.org_id)
    if not ORG_PROVIDERS[provider].ready(access):
        raise ApiError(409, "org_access_missing", ORG_PROVIDERS[provider].missing)
    activation = svc.store.activations.create(caller.user.org_id, caller.user.id, provider, addresses)
    enqueue_activation(activation.id)
    return jsonify({"job_id": activation.id}), 202


def _activation(caller: Caller, aid: str) -> Activation:
    found = services().store.activations.get(aid) if re.fullmatch(r"act[0-9a-f]{20}", aid) else None
    if found is None or found.org_id != caller.user.org_id:
        raise ApiError(404, "not_found", "There is no such activation in your organisation.")
    return found


@bp.get("/admin/activations/<aid>")
def admin_activation(aid: str) -> Response:
    """An activation's progress (n of N) and the results so far."""
    caller = require_admin()
    activation = _activation(caller, aid)
    if activation.state == "running" and job_lost(aid):
        # Only if still running: the job may have finished (and RQ forgotten it) since the read.
        if services().store.activations.move_state(aid, "running", "failed"):
            activation.state = "failed"
        else:
            activation = _activation(caller, aid)
    return jsonify({"id": activation.id, "state": activation.state, "provider": activation.provider,
                    "done": activation.done, "total": activation.total, "created_at": iso(activation.created_at),
                    "results": services().store.activations.results(aid)})


@bp.get("/admin/activations/<aid>/results.csv")
def admin_activation_csv(aid: str) -> Response:
    """The results as CSV (address, result, message)."""
    caller = require_admin()
    _activation(caller, aid)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["address", "result", "message"])
    for row in services().store.activations.results(aid):
        writer.writerow([row["address"], row["result"], row["message"]])
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="activation-{aid}.csv"'})


@bp.post("/admin/deactivate")
def admin_deactivate() -> Response:
    """Turn sync off for mass-activated people: ``{"ids": [...]}``; the outcome per id."""
    caller = require_admin()
    data = json_body(max_bytes=MAX_BODY)
    ids = data.get("ids")
    if not isinstance(ids, list) or not ids or len(ids) > MAX_PEOPLE or \
            not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
        raise ApiError(400, "invalid_input", f"ids must be a list of at most {MAX_PEOPLE} user ids.", field="ids")
    store = services().store
    outcome = deactivate_mass(store, caller.user.org_id, list(dict.fromkeys(ids)))
    done = [uid for uid, status in outcome.items() if status == "deactivated"]
    store.audit.record(caller.user.org_id, caller.user.id, "mass_deactivate", done, {"done": len(done)})
    return jsonify({"results": [{"id": uid, "status": status} for uid, status in outcome.items()],
                    "done": len(done)})


@bp.get("/admin/connections")
def admin_connections() -> Response:
    """Each provider mass activation supports, and whether the org's access to it is set up (the Activate picker)."""
    caller = require_admin()
    access = services().store.org_access.get(caller.user.org_id)
    # From the provider map, so a provider added there shows up in the console with no change here.
    return jsonify({"providers": [
        {"provider": p.name, "label": p.label, "ready": p.ready(access),
         "state": "broken" if p.name in access.broken else ("ok" if p.ready(access) else "not_connected"),
         "missing": None if p.ready(access) else p.missing}
        for p in ORG_PROVIDERS.values()]})


def admin_connection_disconnect(provider: str) -> Response:
    """Disconnect the org's access to ``provider``: sync off for everyone read with it, its facts and secrets gone."""
    caller = require_admin()
    store = services().store
    org_id = caller.user.org_id
    was_connected, stopped = disconnect_org(store, org_id, provider)
    if was_connected or stopped:
        store.audit.record(org_id, caller.user.id, f"disconnect_{provider}", stopped, {"done": len(stopped)})
    # Answered whether or not it was connected: disconnecting twice leaves the same state.
    return jsonify({"provider": provider, "connected": False, "was_connected": was_connected,
                    "deactivated": len(stopped)})


# One DELETE per provider of the map (each path is the one the GET of that connection has).
for _name in ORG_PROVIDERS:
    bp.add_url_rule(f"/admin/connections/{_name}", endpoint=f"admin_connection_disconnect_{_name}",
                    view_func=admin_connection_disconnect, methods=["DELETE"], defaults={"provider": _name})


def _microsoft_view(org_id: str) -> dict[str, Any]:
    access = services().store.org_access.get(org_id)
    broken = access.broken.get("microsoft")
    return {"provider": "microsoft", "connected": bool(access.microsoft_tenant),
            "tenant_id": access.microsoft_tenant or None, "connected_at": iso(access.microsoft_connected_at),
            "state": "broken" if broken else ("ok" if access.microsoft_tenant else "not_connected"),
            "error": {"code": broken["code"], "message": broken["message"], "since": iso(broken["since"])}
            if broken else None}


@bp.get("/admin/connections/microsoft")
def admin_connection_microsoft() -> Response:
    """The org's Microsoft 365 app-only access: the tenant that consented, and whether it works (no secret)."""
    caller = require_admin()
    return jsonify(_microsoft_view(caller.user.org_id))


@bp.post("/admin/connections/microsoft/consent")
def admin_connection_consent() -> Response:
    """The URL that sends a tenant administrator to admin consent, bound to this org's admin."""
    caller = require_admin()
    settings = services().settings
    url = f"{settings.PUBLIC_BASE_URL}/auth/microsoft/admin-consent?ticket={issue_ticket(caller.user.id, 'microsoft')}"
    return jsonify({"url": url})


@bp.post("/admin/connections/microsoft/check")
def admin_connection_check() -> Response:
    """Check the org's access now; when it works again, everyone it stopped resumes from their cursors."""
    caller = require_admin()
    svc = services()
    org_id = caller.user.org_id
    access = svc.store.org_access.get(org_id)
    if not access.microsoft_tenant:
        raise ApiError(409, "org_access_missing", "Microsoft 365 is not connected for your organisation.")
    reason = MICROSOFT.refused(svc.settings, svc.clients, svc.store, access)
    resumed = 0
    if reason is None and svc.store.org_access.clear_broken(org_id, MICROSOFT.name):
        resumed = resume_org(svc.store, org_id, MICROSOFT.name)
    return jsonify({**_microsoft_view(org_id), "check": "ok" if reason is None else "refused",
                    "check_message": reason, "resumed": resumed})
