"""Graph's change and lifecycle notifications, and the validation handshake of both URLs.

* ``POST ...?validationToken=`` (Graph checking the URL when a subscription is made): 200
  ``text/plain`` with the token, and nothing else: no Redis, no Graph on that path.
* A notification: each entry's ``subscriptionId`` must be ours and its ``clientState`` must match
  the kept hash (compared in constant time); then the mailbox's run is planned. Unknown or wrong
  entries are logged and answered 202 like the rest (the sender learns nothing); a body that is
  not a JSON object of entries is a 4xx. Nothing here is a 5xx for anything a sender can send.
* Lifecycle: ``reauthorizationRequired`` renews the subscriptions; ``subscriptionRemoved`` recreates
  them, then a delta run reads what was missed; ``missed`` (notifications lost, subscription alive) is
  a delta run. Entries are grouped per mailbox: one job each.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response

from backend.api.errors import ApiError
from backend.api.validation import json_body
from backend.extensions import services
from backend.jobs.push import enqueue_push_job, ensure_push, plan_push_run, renew_push
from backend.jobs.sync import enqueue_sync
from backend.observability.metrics import record_webhook
from backend.security.crypto import constant_time_equal, fingerprint
from backend.store.push import GRAPH

log = logging.getLogger(__name__)

bp = Blueprint("hooks", __name__, url_prefix="/hooks")

# Graph sends notifications in batches; far more than it ever sends at once is refused (413).
MAX_BODY_BYTES = 256 * 1024
MAX_ENTRIES = 1000
MAX_TOKEN_CHARS = 2048


def _handshake() -> Response | None:
    """The validation answer when this request is Graph's handshake, else None (no Redis touched)."""
    from flask import request

    if "validationToken" not in request.args:
        return None
    token = request.args.get("validationToken", "")
    if not token or len(token) > MAX_TOKEN_CHARS:
        return Response("validationToken missing or too long", status=400, mimetype="text/plain")
    return Response(token, status=200, mimetype="text/plain")


def _verified(entries: list[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(mailbox id, subscription id, entry) of each entry from a known subscription with its clientState."""
    valid = [e for e in entries[:MAX_ENTRIES] if isinstance(e, dict) and isinstance(e.get("subscriptionId"), str)
             and isinstance(e.get("clientState"), str) and 0 < len(e["subscriptionId"]) <= 200]
    push = services().store.push
    found = push.lookup_many([e["subscriptionId"] for e in valid]) if valid else []
    result = []
    for entry, known in zip(valid, found, strict=True):
        sub_id = entry["subscriptionId"]
        if known is None:
            log.info("graph notification for an unknown subscription sub=%s", fingerprint(sub_id))
            continue
        if known.provider != GRAPH:
            # A Gmail watch shares the index; only Pub/Sub's signed pushes may name it.
            log.warning("graph notification naming a Gmail watch sub=%s", fingerprint(sub_id))
            continue
        mid, state_hash = known.mailbox_id, known.state_hash
        if not constant_time_equal(push.hash_state(entry["clientState"][:500]), state_hash):
            log.warning("graph notification with a wrong clientState sub=%s", fingerprint(sub_id))
            continue
        result.append((mid, sub_id, entry))
    refused = len(entries) - len(result)
    if refused:
        log.info("graph notifications refused=%d of %d", refused, len(entries))
    return result


def _entries() -> list[Any]:
    data = json_body(MAX_BODY_BYTES)
    entries = data.get("value")
    if not isinstance(entries, list):
        raise ApiError(400, "invalid_input", "A notification body holds a list in \"value\".")
    return entries


@bp.post("/graph")
def graph_notification() -> Any:
    """Change notifications: plan one debounced delta run per mailbox they name."""
    answer = _handshake()
    if answer is not None:
        return answer
    entries = _entries()
    verified = _verified(entries)
    record_webhook("graph", "accepted", len(verified))
    record_webhook("graph", "refused", len(entries) - len(verified))
    for mid in sorted({mid for mid, _, _ in verified}):
        plan_push_run(mid)
    return Response(status=202)


@bp.post("/graph/lifecycle")
def graph_lifecycle() -> Any:
    """Lifecycle notifications: renew, or recreate and read what was missed."""
    answer = _handshake()
    if answer is not None:
        return answer
    # Graph batches entries: one job per mailbox and event carries all of its subscriptions
    # (jobs are unique per mailbox, so one job per entry would drop all but the first).
    renew: dict[str, list[str]] = {}
    removed: dict[str, list[str]] = {}
    missed: set[str] = set()
    verified = _verified(_entries())
    record_webhook("graph_lifecycle", "accepted", len(verified))
    for mid, sub_id, entry in verified:
        event = entry.get("lifecycleEvent")
        if event == "reauthorizationRequired":
            renew.setdefault(mid, []).append(sub_id)
        elif event == "subscriptionRemoved":
            removed.setdefault(mid, []).append(sub_id)
        elif event == "missed":
            missed.add(mid)
        else:
            log.info("graph lifecycle event ignored event=%s", str(event)[:40])
    store = services().store
    now = time.time()
    for mid, subs in renew.items():
        # Kept for the renewal job as well as passed to it: while one is queued or running (its id
        # is unique per mailbox) a second request is refused as a duplicate, and would be lost.
        store.push.ask_renewal(mid, subs, now)
        enqueue_push_job(renew_push, mid, "renew", tuple(subs))
    for mid, subs in removed.items():
        # Gone at Graph: forgotten here at once, so whichever ensure job runs next makes it again.
        for sub_id in subs:
            store.push.forget(mid, sub_id)
        enqueue_push_job(ensure_push, mid, "ensure")
    for mid in missed - set(removed):
        # The subscription still works; only notifications were lost: a delta run reads what they said.
        enqueue_sync(mid)
    return Response(status=202)
