"""The administration API (``/api/admin``): the org at a glance, its users, actions, policy, audit.

Every view calls :func:`require_admin` first: the console's session (with CSRF on state changes)
or an admin's pane bearer token. Users are always looked up within the admin's own org.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Response, jsonify, request

from backend.admin import actions, directory
from backend.api.admin_auth import Caller, admin_flag, org_user, require_admin, signed_in
from backend.api.blueprint import bp
from backend.api.errors import ApiError
from backend.api.sync import iso
from backend.api.validation import json_body
from backend.extensions import services
from backend.store.mailboxes import SyncState
from backend.sync.policy import PolicyError, policy_changes, policy_view

DETAIL_RUNS = 20
DETAIL_ISSUES = 50
AUDIT_SHOWN = 200


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_input", f"{name} must be a whole number from {low} to {high}.", field=name)
    return int(raw)


def _choice_arg(name: str, choices: tuple[str, ...]) -> str:
    raw = request.args.get(name, "")
    if raw and raw not in choices:
        raise ApiError(400, "invalid_input", f"{name} must be one of: {', '.join(choices)}.", field=name)
    return raw


def _times(row: dict[str, Any]) -> dict[str, Any]:
    for name in ("last_success_at", "activated_at", "last_seen_at"):
        row[name] = iso(row[name])
    return row


@bp.get("/admin/session")
def admin_session() -> Response:
    """Who is signed in to the console, whether they administer, and the CSRF token of the session."""
    caller = signed_in()
    user = caller.user
    return jsonify({"user": {"id": user.id, "name": user.display_name, "username": user.username,
                             "org_id": user.org_id},
                    "is_admin": admin_flag(user), "csrf": caller.console.csrf if caller.console else None})


@bp.get("/admin/summary")
def admin_summary() -> Response:
    """The org at a glance."""
    caller = require_admin()
    svc = services()
    body = directory.summary(svc.store, caller.user.org_id, svc.settings.SF_API_BUDGET_PERCENT)
    body["oldest_last_success_at"] = iso(body["oldest_last_success_at"])
    body["backoff_until"] = iso(body["backoff_until"])
    if body["api_usage"]:
        body["api_usage"]["seen_at"] = iso(body["api_usage"]["seen_at"])
    return jsonify(body)


@bp.get("/admin/users")
def admin_users() -> Response:
    """A page of the org's users: ``state``, ``provider``, ``q`` (name or address), ``sort``, ``order``, ``page``."""
    caller = require_admin()
    search = request.args.get("q", "")
    if len(search) > 200:
        raise ApiError(400, "invalid_input", "q is too long (at most 200 characters).", field="q")
    query = directory.Query(
        state=_choice_arg("state", tuple(s.value for s in SyncState)),
        provider=_choice_arg("provider", ("exchange", "microsoft", "google", "none")),
        search=search,
        sort=_choice_arg("sort", directory.SORTS) or "name",
        descending=_choice_arg("order", ("asc", "desc")) == "desc",
        page=_int_arg("page", 1, 1, 100_000),
        per_page=_int_arg("per_page", 50, 1, directory.MAX_PER_PAGE),
    )
    body = directory.list_users(services().store, caller.user.org_id, query)
    body["users"] = [_times(row) for row in body["users"]]
    return jsonify(body)


def _detail(caller: Caller, uid: str) -> dict[str, Any]:
    org_user(caller, uid)  # 404 unless of the admin's org
    store = services().store
    mailbox = store.mailboxes.get(uid)
    found = directory.user_row(store, uid)
    row: dict[str, Any] = _times(found) if found else {"id": uid}
    row.update({
        "runs": store.runs.recent(uid, DETAIL_RUNS),
        "quarantine": {"count": store.quarantine.count(uid), "items": store.quarantine.recent(uid, DETAIL_ISSUES)},
        "settings": mailbox.settings if mailbox else None,
        "next_run": iso(store.schedule.next_of(uid) or 0.0),
    })
    return row


@bp.get("/admin/users/<uid>")
def admin_user(uid: str) -> Response:
    """One user of the org: the row, the last 20 runs, the quarantined items with Salesforce's reasons."""
    return jsonify(_detail(require_admin(), uid))


def _run(outcomes: list[actions.Outcome], action: str) -> None:
    from backend.jobs.sync import enqueue_sync

    store = services().store
    for outcome in outcomes:
        if outcome.run_now:
            store.schedule.set_next(outcome.uid, time.time())
            # A selection's runs go to the background queue: the interactive one is for people waiting.
            enqueue_sync(outcome.uid, interactive=action == "sync" and len(outcomes) == 1)


def _run_in_progress(uid: str) -> bool:
    from backend.jobs.sync import job_status

    return job_status(uid) == "running"


def _act(caller: Caller, uids: list[str], action: str) -> list[actions.Outcome]:
    store = services().store
    outcomes = [actions.act(store, uid, action, running=_run_in_progress) for uid in uids]
    _run(outcomes, action)
    actions.record(store, caller.user.org_id, caller.user.id, action, outcomes)
    return outcomes


@bp.post("/admin/users/<uid>/<action>")
def admin_user_action(uid: str, action: str) -> Any:
    """Enable, disable, pause, resume, sync now or reset one user's sync."""
    caller = require_admin()
    if action not in actions.ACTIONS:
        raise ApiError(404, "not_found", "There is nothing at this address.")
    org_user(caller, uid)
    outcome = _act(caller, [uid], action)[0]
    if outcome.status == "invalid_state":
        raise ApiError(409, "invalid_state", outcome.message)
    if outcome.status == "rate_limited":
        raise ApiError(429, "rate_limited", outcome.message, retry_after=actions.SYNC_NOW_SECONDS)
    return jsonify(_detail(caller, uid)), 202 if outcome.run_now else 200


@bp.post("/admin/users/bulk")
def admin_bulk() -> Response:
    """The same action on a selection: ``{"action": "pause", "ids": [...]}``; the outcome per user."""
    caller = require_admin()
    data = json_body(max_bytes=64 * 1024)
    unknown = set(data) - {"action", "ids"}
    if unknown:
        raise ApiError(400, "invalid_input", f"Unknown field: {', '.join(sorted(unknown))}.")
    action = data.get("action")
    if action not in actions.ACTIONS:
        raise ApiError(400, "invalid_input", f"action must be one of: {', '.join(actions.ACTIONS)}.", field="action")
    ids = data.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
        raise ApiError(400, "invalid_input", "ids must be a list of user ids.", field="ids")
    if len(ids) > actions.MAX_BULK:
        raise ApiError(400, "invalid_input", f"Select at most {actions.MAX_BULK} users at a time.", field="ids")
    uids = list(dict.fromkeys(ids))
    for uid in uids:
        org_user(caller, uid)  # one of another org makes the whole request 404, before any change
    outcomes = _act(caller, uids, str(action))
    return jsonify({"action": action, "results": [o.as_dict() for o in outcomes],
                    "done": sum(1 for o in outcomes if o.status == "ok")})


@bp.get("/admin/settings")
def admin_settings() -> Response:
    """The org policy: each value with ``locked``."""
    caller = require_admin()
    return jsonify(policy_view(services().store.orgs.get(caller.user.org_id)))


@bp.put("/admin/settings")
def admin_put_settings() -> Response:
    """Change the policy: ``{name: {"value": ..., "locked": bool}}`` (either part optional) or ``{name: value}``."""
    caller = require_admin()
    data = json_body()
    store = services().store
    org_id = caller.user.org_id
    try:
        changes = policy_changes(store.orgs.get(org_id), data)
    except PolicyError as exc:
        raise ApiError(400, "invalid_input", str(exc), field=exc.field) from None
    org = store.orgs.update(org_id, **changes) if changes else store.orgs.get(org_id)
    if changes:
        store.audit.record(org_id, caller.user.id, "settings", [org_id], {"changed": sorted(changes)})
    return jsonify(policy_view(org))


@bp.get("/admin/audit")
def admin_audit() -> Response:
    """The org's audit log, newest first (the last 200), with the names of who and whom."""
    caller = require_admin()
    store = services().store
    entries = store.audit.recent(caller.user.org_id, AUDIT_SHOWN)
    # Names of who and whom (a large selection is told by its count only).
    uids = sorted({e["actor"] for e in entries} | {t for e in entries if len(e["targets"]) <= 20
                                                     for t in e["targets"]})
    names: dict[str, str] = {}
    if uids:
        with store.redis.pipeline(transaction=False) as pipe:
            for uid in uids:
                pipe.hmget(store.keys("user", uid), "display_name", "username")
            for uid, (name, username) in zip(uids, pipe.execute(), strict=True):
                names[uid] = json.loads(name or '""') or json.loads(username or '""')
    return jsonify({"entries": [{**e, "at": iso(e["at"]), "actor_name": names.get(e["actor"], ""),
                                 "target_names": [names.get(t, "") for t in e["targets"]]} for e in entries]})
