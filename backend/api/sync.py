"""Sync state and controls for the task pane: ``/api/sync`` and its actions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Response, jsonify

from backend.api.blueprint import bp
from backend.api.errors import ApiError
from backend.api.tokens import current_user
from backend.api.validation import bool_field, choice_field, json_body
from backend.errors import SetupFailed
from backend.extensions import services
from backend.jobs.push import drop_push_now
from backend.jobs.sync import job_status_in
from backend.store.batch import Batch, Deferred
from backend.store.mailboxes import InvalidTransition, SyncMailbox, SyncState
from backend.store.orgs import OrgSettings
from backend.store.push import PushHealth
from backend.store.users import User
from backend.sync import activation
from backend.sync.cadence import QUIET_FACTORS
from backend.sync.mass_controls import LOCKED_BY_POLICY, locked_controls
from backend.sync.policy import PERSONAL_NAMES, chosen_by_person, effective_settings, person_view
from backend.sync.push import instant_sync_view
from backend.sync.settings import normalise_blocklist

RECENT_RUNS = 10
QUARANTINE_SHOWN = 10

STATE_LABELS = {
    SyncState.NOT_ACTIVATED: "Sync is not activated",
    SyncState.RUNNING: "Sync is running",
    SyncState.PAUSED: "Sync is paused",
    SyncState.DISABLED_ERROR: "Sync is disabled due to an error",
    SyncState.DEACTIVATED: "Sync is deactivated",
}


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC string (None stays None)."""
    if not ts:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def _minutes(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes % 60 == 0:
        hours = minutes // 60
        return "every hour" if hours == 1 else f"every {hours} hours"
    return f"every {minutes} minutes"


def interval_view(base: int, current: int) -> dict[str, Any]:
    """The background interval, said honestly: the base, and how it stretches while nothing changes."""
    longer = [base * QUIET_FACTORS[0], base * QUIET_FACTORS[1]]
    return {"base_seconds": base, "current_seconds": current or base, "quiet_seconds": longer,
            "text": f"{_minutes(base)}; {_minutes(longer[0])}, then {_minutes(longer[1])}, while nothing changes"}


@dataclass
class ViewReads:
    """What the pane's sync view reads besides the mailbox, queued on one store batch."""

    next_run: Deferred[float | None]
    org: Deferred[OrgSettings]
    job: Deferred[str | None]
    runs: Deferred[list[dict[str, Any]]]
    quarantined: Deferred[int]
    quarantine: Deferred[list[dict[str, Any]]]
    push: Deferred[PushHealth | None]

    @classmethod
    def queue(cls, batch: Batch, mid: str, org_id: str) -> ViewReads:
        """Queue the reads of mailbox ``mid`` of org ``org_id``."""
        store = services().store
        return cls(store.schedule.next_in(batch, mid), store.orgs.get_in(batch, org_id), job_status_in(batch, mid),
                   store.runs.recent_in(batch, mid, RECENT_RUNS), store.quarantine.count_in(batch, mid),
                   store.quarantine.recent_in(batch, mid, QUARANTINE_SHOWN),
                   store.push.health_in(batch, mid))


def sync_view(mailbox: SyncMailbox) -> dict[str, Any]:
    """The JSON the task pane shows for a sync mailbox (its reads in one round trip)."""
    batch = services().store.batch()
    reads = ViewReads.queue(batch, mailbox.id, mailbox.org_id)
    batch.run()
    return view_of(mailbox, reads, current_user())


def view_of(mailbox: SyncMailbox, reads: ViewReads, user: User) -> dict[str, Any]:
    """The sync view from the mailbox and what was read with it (``user``: the person asking)."""
    svc = services()
    next_run = reads.next_run.value if mailbox.state is SyncState.RUNNING else None
    org = reads.org.value
    backoff = None
    if org.api_backoff_until and org.api_backoff_until > datetime.now(tz=UTC).timestamp():
        backoff = {
            "reason": "salesforce_api_budget",
            "message": "Your organisation is close to its daily Salesforce API limit, so background sync "
                       "runs less often for now. Sync now and saving from the sidebar still work.",
            "until": iso(org.api_backoff_until),
            "level": org.api_backoff_level,
        }
    usage = None
    if org.api_max:
        usage = {"used": org.api_used, "limit": org.api_max, "percent": round(100.0 * org.api_used / org.api_max, 1),
                 "budget_percent": svc.settings.SF_API_BUDGET_PERCENT, "seen_at": iso(org.api_seen_at)}
    error = dict(mailbox.error) if mailbox.error else None
    # A mailbox proven by Nested App Authentication is a Microsoft 365 one: consent is the next step.
    owner = user if user.id == mailbox.user_id else svc.store.users.get(mailbox.user_id)
    suggested = "microsoft" if owner is not None and owner.addin_identity.startswith("naa:") else None
    if error and "since" in error:
        error["since"] = iso(error["since"])
    if error:
        error.pop("first_failed_at", None)
        error["action"] = error_action(mailbox)
    job = reads.job.value if mailbox.activated else None
    return {
        "state": mailbox.state.value,
        "state_label": STATE_LABELS[mailbox.state],
        "provider": mailbox.provider or None,
        "suggested_provider": suggested,
        "mailbox": mailbox.address or None,
        "activated_at": iso(mailbox.activated_at),
        "last_run": mailbox.last_run,
        "next_run": iso(next_run),
        "interval_seconds": mailbox.interval_seconds or svc.settings.SYNC_INTERVAL_SECONDS,
        # The cadence as it is: quiet runs stretch the interval (backend/sync/cadence.py).
        "interval": interval_view(svc.settings.SYNC_INTERVAL_SECONDS, mailbox.interval_seconds),
        "aliases": list(mailbox.aliases),
        # Whether Graph notifications start runs now, and if not why (None where push does not apply).
        "instant_sync": instant_sync_view(svc.settings, mailbox, reads.push.value),
        "error": error,
        "auth_failures": mailbox.auth_failures,
        "max_auth_failures": svc.settings.MAX_AUTH_FAILURES,
        # "queued", "running" or "retry_scheduled" while a run is on its way; None otherwise.
        "job": job,
        "running_now": job == "running",
        "recent_runs": reads.runs.value,
        "quarantine": {"count": reads.quarantined.value, "items": reads.quarantine.value},
        "backoff": backoff,
        "api_usage": usage,
        # What applies: the person's choices, with the org's defaults and locked values.
        "settings": {k: v for k, v in effective_settings(org, mailbox.settings).items() if k in PERSONAL_NAMES},
        "policy": person_view(org),
        # Pause / Deactivate the org policy refuses for a mass-activated mailbox: {action: reason to show}.
        "locked_controls": locked_controls(org, mailbox),
        "connection": {k: v for k, v in mailbox.connection.items() if k in ("login", "ews_url", "tenant_id")},
    }


def error_action(mailbox: SyncMailbox) -> str | None:
    """What the pane offers for the mailbox's error: ``reconnect``, ``ask_admin`` or nothing.

    A mailbox the administrator holds off refuses every reconnect (``locked_by_admin``): only they
    can turn it back on, so the pane says whom to ask instead of offering a Reconnect that cannot work.
    """
    if mailbox.state is not SyncState.DISABLED_ERROR:
        return None
    return "ask_admin" if mailbox.admin_hold else "reconnect"


def _mailbox() -> SyncMailbox:
    user = current_user()
    return services().store.mailboxes.ensure(user.id, user.org_id)


@bp.get("/sync")
def get_sync() -> Response:
    """State, provider, mailbox, last and next run, settings (one Redis round trip after the token's)."""
    user = current_user()
    store = services().store
    batch = store.batch()
    found = store.mailboxes.get_in(batch, user.id)
    # The mailbox is the user's (its id is the uid) and in the user's org: everything is read at once.
    reads = ViewReads.queue(batch, user.id, user.org_id)
    batch.run()
    mailbox = found.value
    if mailbox is None or mailbox.org_id != user.org_id:
        return jsonify(sync_view(_mailbox()))  # first visit: created now, then read
    return jsonify(view_of(mailbox, reads, user))


@bp.put("/sync/settings")
def put_sync_settings() -> Response:
    """Change what to sync and the personal blocklist."""
    data = json_body()
    unknown = set(data) - {"sync_emails", "sync_events", "blocklist", "cancelled_events"}
    if unknown:
        raise ApiError(400, "invalid_input", f"Unknown setting: {', '.join(sorted(unknown))}.")
    mailbox = _mailbox()
    org = services().store.orgs.get(mailbox.org_id)
    locked = sorted(set(data) & set(org.locked))
    if locked:
        raise ApiError(403, "locked_by_admin", "Your administrator set this for everyone in your organisation.",
                       field=locked[0])
    given: dict[str, Any] = {}
    for name in ("sync_emails", "sync_events"):
        value = bool_field(data, name)
        if value is not None:
            given[name] = value
    if "cancelled_events" in data:
        given["cancelled_events"] = choice_field(data, "cancelled_events", ("mark", "delete"))
    if "blocklist" in data:
        try:
            given["blocklist"] = normalise_blocklist(data["blocklist"])
        except ValueError as exc:
            raise ApiError(400, "invalid_input", str(exc), field="blocklist") from None
    # A value becomes the person's choice only when it differs from what applies to them now: a
    # client that sends the whole form (the pane's Save) must not freeze the org defaults it echoes.
    now = effective_settings(org, mailbox.settings)
    chosen = chosen_by_person(mailbox.settings) | {name for name, value in given.items() if value != now.get(name)}
    settings = {**mailbox.settings, **given, "chosen": sorted(chosen)}
    services().store.mailboxes.update(mailbox.id, settings=settings)
    return jsonify(sync_view(_mailbox()))


def _transition(action: str) -> Response:
    mailbox = _mailbox()
    repo = services().store.mailboxes
    refused = locked_controls(services().store.orgs.get(mailbox.org_id), mailbox).get(action)
    if refused:
        raise ApiError(403, LOCKED_BY_POLICY, refused)
    try:
        if action == "pause":
            mailbox = repo.pause(mailbox.id)
            services().store.schedule.remove(mailbox.id)
        elif action == "resume":
            mailbox = activation.resume(services().store, mailbox.id)
            _schedule_now(mailbox.id)
        elif action == "deactivate":
            google_token = _google_refresh_token(mailbox)
            drop_push_now(mailbox.id)  # while its credentials exist: Deactivate deletes them
            mailbox = repo.deactivate(mailbox.id)
            services().store.schedule.remove(mailbox.id)
            if google_token:
                # Deactivate means Google should forget our access too (best effort: it is deleted here).
                services().clients.google_auth.revoke(google_token)
    except InvalidTransition as exc:
        raise ApiError(409, "invalid_state", _transition_message(exc.current, action)) from None
    except SetupFailed as exc:  # locked_by_admin: an administrator turned sync off
        raise ApiError(403, exc.code, exc.message) from None
    return jsonify(sync_view(mailbox))


def _google_refresh_token(mailbox: SyncMailbox) -> str:
    """The stored Google refresh token of a Gmail mailbox ("" for other providers or none)."""
    if mailbox.provider != "google":
        return ""
    from backend.connectors.google import REFRESH_SECRET

    return services().store.secrets.get("mailbox", mailbox.id, REFRESH_SECRET) or ""


def _transition_message(state: SyncState, action: str) -> str:
    if state is SyncState.NOT_ACTIVATED or state is SyncState.DEACTIVATED:
        return "Sync is not activated. Set it up first."
    if state is SyncState.DISABLED_ERROR:
        return "Sync is disabled due to an error. Reconnect your mailbox to re-enable it."
    verbs = {"pause": "paused", "resume": "resumed", "deactivate": "deactivated", "run": "run now"}
    return f"Sync is {state.value.replace('_', ' ')}, so it cannot be {verbs.get(action, action)}."


def _schedule_now(mid: str) -> bool:
    from backend.jobs.sync import enqueue_sync

    services().store.schedule.set_next(mid, datetime.now(tz=UTC).timestamp())
    return enqueue_sync(mid, interactive=True)


@bp.post("/sync/pause")
def pause() -> Response:
    """Pause sync (credentials and cursors kept)."""
    return _transition("pause")


@bp.post("/sync/resume")
def resume() -> Response:
    """Resume a paused sync (runs at once)."""
    return _transition("resume")


@bp.post("/sync/deactivate")
def deactivate() -> Response:
    """Deactivate sync: mailbox credentials and cursors removed; the Salesforce login stays."""
    return _transition("deactivate")


@bp.post("/sync/run")
def run_now() -> Any:
    """Sync now: enqueue a run at once (interactive queue).

    A background run still waiting (behind the ``sync`` backlog, or scheduled for a retry) moves to
    the front of the interactive queue: ``queued`` is true whenever the person's run is next in line
    because of this call, false when a run was already on its way (or running).
    """
    mailbox = _mailbox()
    if mailbox.state is not SyncState.RUNNING:
        raise ApiError(409, "invalid_state", _transition_message(mailbox.state, "run"))
    queued = _schedule_now(mailbox.id)
    body = sync_view(mailbox)
    body["queued"] = queued
    return jsonify(body), 202
