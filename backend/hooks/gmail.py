"""``POST /hooks/gmail``: Gmail's Pub/Sub pushes, each a trigger for the mailbox's normal run.

The OIDC token in ``Authorization`` is checked first (Google's signature, the audience, the push
service account: :class:`backend.connectors.google.push.PushVerifier`); a forged or foreign one is
403 and nothing else. The message names the mailbox by address (``emailAddress``); an address we do
not watch is acknowledged (204) and ignored, so Pub/Sub does not redeliver it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from flask import Response, request

from backend.api.errors import ApiError, error_response
from backend.api.validation import json_body
from backend.connectors.google.push import PushVerifier
from backend.errors import NotAuthentic, Unavailable
from backend.extensions import services
from backend.hooks.graph import bp
from backend.jobs.push import plan_push_run
from backend.observability.metrics import record_webhook
from backend.store.push import GMAIL
from backend.sync.push import gmail_sub_id

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


def _address() -> str:
    """The ``emailAddress`` of the push message's data; 400 when the body is not a Pub/Sub push."""
    data = json_body(MAX_BODY_BYTES)
    message = data.get("message")
    raw = message.get("data") if isinstance(message, dict) else None
    if not isinstance(raw, str) or len(raw) > 4096:
        raise ApiError(400, "invalid_input", "A push holds message.data.")
    try:
        decoded = json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_input", "message.data is not base64 JSON.") from None
    address = decoded.get("emailAddress") if isinstance(decoded, dict) else None
    if not isinstance(address, str) or "@" not in address or len(address) > 320:
        raise ApiError(400, "invalid_input", "message.data names no emailAddress.")
    return address


@bp.post("/gmail")
def gmail_push() -> Any:
    """A Gmail change: plan the mailbox's debounced run."""
    svc = services()
    verifier = svc.clients.pubsub_verifier or PushVerifier(svc.settings)
    try:
        verifier.verify(request.headers.get("Authorization"))
    except NotAuthentic as exc:
        log.warning("gmail push refused: %s", exc.message)
        record_webhook("gmail", "refused")
        return error_response(403, "not_authentic", "The push did not prove it came from Google.")
    except Unavailable:
        # Our side cannot check it now: Pub/Sub redelivers after a 503.
        return error_response(503, "unavailable", "The push cannot be checked now.")
    address = _address()
    known = svc.store.push.lookup(gmail_sub_id(address))
    # The OIDC token proved the sender; the index only says whether we watch that address.
    if known is None or known.provider != GMAIL:
        log.info("gmail push for a mailbox not watched")
        record_webhook("gmail", "unknown")
        return Response(status=204)
    record_webhook("gmail", "accepted")
    plan_push_run(known[0])
    return Response(status=204)
