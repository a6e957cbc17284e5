"""The item in front of the person: ``/api/items/status``, Log it now, Never log this sender or domain.

Every answer is about the person's own sync mailbox: the trail is read under their mailbox id and
Salesforce is asked with their own login, so another person's decisions never answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Response, jsonify, request

from backend.api.blueprint import bp
from backend.api.errors import ApiError
from backend.api.sync import sync_view
from backend.api.tokens import current_user
from backend.api.validation import json_body, text_field
from backend.connectors.mailbox import normalise_message_id
from backend.extensions import services
from backend.store.mailboxes import SyncMailbox, SyncState
from backend.sync.item import LogItemRefused, log_item, meeting_key
from backend.sync.settings import normalise_blocklist
from backend.sync.status import ItemQuery, item_status

# Look-ups cost Salesforce calls when the trail is silent: a pane flipping through mail stays far
# below this, a loop does not.
STATUS_LIMIT = 120
STATUS_WINDOW_SECONDS = 600
LOG_NOW_LIMIT = 30
LOG_NOW_WINDOW_SECONDS = 600
MAX_ID_CHARS = 998  # RFC 5322 line limit: no Message-ID is longer


def _query(data: dict[str, Any]) -> ItemQuery:
    """The item asked about, from query parameters or a JSON body.

    A meeting may be named by Outlook's item id alone (``kind=event``, ``item_id``): Office.js does
    not expose the UID, so the server reads the meeting from the mailbox and names it by its key (one
    occurrence of a series by ``UID@start``, so each occurrence has its own answer).
    """
    message_id = text_field(data, "message_id", required=False, max_len=MAX_ID_CHARS, label="message_id")
    event_uid = text_field(data, "event_uid", required=False, max_len=MAX_ID_CHARS, label="event_uid")
    if not message_id and not event_uid and data.get("kind") == "event" and data.get("item_id"):
        item_id = text_field(data, "item_id", max_len=2048, label="item_id")
        event_uid = meeting_key(services().engine, current_user().id, item_id)
        if not event_uid:
            raise ApiError(404, "item_not_found", "Sidebar Sync could not find this meeting in your synced mailbox.")
    if bool(message_id) == bool(event_uid):
        raise ApiError(400, "invalid_input", "Give either message_id (an email) or event_uid (a meeting).",
                       field="message_id")
    when: datetime | None = None
    raw_date = text_field(data, "date", required=False, max_len=40)
    if raw_date:
        try:
            when = datetime.fromisoformat(raw_date.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, "invalid_input", "date must be an ISO 8601 date and time.", field="date") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return ItemQuery(message_id=normalise_message_id(message_id) if message_id else "", event_uid=event_uid,
                     item_date=when)


def _limit(name: str, limit: int, window: int) -> None:
    allowed, retry = services().store.ratelimit.hit(name, current_user().id, limit, window)
    if not allowed:
        raise ApiError(429, "rate_limited", f"Too many look-ups. Try again in {retry} seconds.", retry_after=retry)


def _mailbox() -> SyncMailbox:
    user = current_user()
    return services().store.mailboxes.ensure(user.id, user.org_id)


@bp.get("/items/status")
def get_item_status() -> Response:
    """What sync did with one email (``message_id``) or meeting (``event_uid``) of the person's mailbox."""
    _limit("item-status", STATUS_LIMIT, STATUS_WINDOW_SECONDS)
    args = dict(request.args)
    svc = services()
    mailbox = _mailbox()
    if mailbox.state in (SyncState.NOT_ACTIVATED, SyncState.DEACTIVATED):
        # Nothing to look up (a meeting's UID could not even be read): sync is not set up.
        kind = "email" if args.get("message_id") else "event"
        return jsonify({"kind": kind, "status": "not_logged", "reason": "sync_off", "records": [],
                        "sync_state": mailbox.state.value, "can_log_now": False, "source": None})
    query = _query(args)
    return jsonify(item_status(svc.store, svc.settings, svc.clients, mailbox, current_user(), query))


@bp.post("/items/log")
def post_log_item() -> Response:
    """Log it now: this one item, through the engine, also while sync is paused (privacy rules hold)."""
    data = json_body()
    _limit("item-log", LOG_NOW_LIMIT, LOG_NOW_WINDOW_SECONDS)
    query = _query(data)
    item_id = text_field(data, "item_id", required=True, max_len=2048, label="item_id")
    svc = services()
    mailbox = _mailbox()
    if mailbox.state not in (SyncState.RUNNING, SyncState.PAUSED):
        raise ApiError(409, "invalid_state", "Sync is not set up for this mailbox, so nothing can be logged from "
                                             "here. Set up sync first.")
    try:
        log_item(svc.engine, mailbox.id, query.identifier, query.kind, item_id)
    except LogItemRefused as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return jsonify(item_status(svc.store, svc.settings, svc.clients, svc.store.mailboxes.get(mailbox.id) or mailbox,
                               current_user(), query))


@bp.post("/items/block")
def post_block() -> Response:
    """Never log this sender (an address) or this domain: added to the person's own blocklist."""
    data = json_body()
    entry = text_field(data, "entry", required=True, max_len=254, label="entry")
    mailbox = _mailbox()
    org = services().store.orgs.get(mailbox.org_id)
    if "blocklist" in org.locked:
        # Org policy (set by the administrator) decides the blocklist for everyone.
        raise ApiError(403, "locked_by_admin", "Your organisation's administrator manages the blocklist, so it "
                                               "cannot be changed here.")
    try:
        added = normalise_blocklist([entry])
    except ValueError as exc:
        raise ApiError(400, "invalid_input", str(exc), field="entry") from None
    settings = dict(mailbox.settings)
    current = list(settings.get("blocklist") or [])
    settings["blocklist"] = normalise_blocklist([*current, *added])
    services().store.mailboxes.update(mailbox.id, settings=settings)
    return jsonify({"added": added, "sync": sync_view(_mailbox())})
