"""The pane's two reads, ``/api/sync`` and ``/api/me``: the token check and the view in one Redis pipeline each."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from backend.api.tokens import SALESFORCE_CHECK
from backend.extensions import services
from sandbox.login import LoggedIn
from sandbox.redis_trips import round_trips
from tests.api.test_sync_api import active, session  # noqa: F401 - fixtures


def trips(client: FlaskClient, path: str, headers: dict[str, str]) -> int:
    """Round trips of one GET of ``path``, answered 200."""
    with round_trips() as counter:
        resp = client.get(path, headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return counter.count


def test_api_sync_is_one_round_trip_after_the_tokens(app: Flask, client: FlaskClient, active: LoggedIn) -> None:  # noqa: F811
    client.get("/api/sync", headers=active.headers)  # warm: the Salesforce check done, connections open
    with app.app_context():
        store = services().store
        store.runs.record(active.uid, {"id": "r1", "status": "ok", "counts": {"read": 1}})
        store.quarantine.add(active.uid, [{"key": "<a@x>", "object": "EmailMessage", "reason": "INVALID"}])
    # The token check (session, user, idle timeout, Salesforce check marker), then the view's reads.
    assert trips(client, "/api/sync", active.headers) == 2
    body = client.get("/api/sync", headers=active.headers).json
    assert body["recent_runs"][0]["id"] == "r1" and body["quarantine"]["count"] == 1
    assert body["job"] == "queued" and body["next_run"] is not None


def test_api_me_is_the_token_checks_round_trip_only(client: FlaskClient, active: LoggedIn) -> None:  # noqa: F811
    client.get("/api/me", headers=active.headers)  # warm
    assert trips(client, "/api/me", active.headers) == 1
    assert client.get("/api/me", headers=active.headers).json["mailbox"]["address"] == "alice@acme.example"


def test_a_revoked_token_answers_401_in_one_round_trip_and_puts_no_check_off(
        app: Flask, client: FlaskClient, active: LoggedIn) -> None:  # noqa: F811
    client.get("/api/me", headers=active.headers)
    assert client.delete("/api/session", headers=active.headers).status_code in (200, 204)
    with app.app_context():
        store = services().store
        marker = store.keys("once", SALESFORCE_CHECK, active.uid)
        store.redis.delete(marker)  # the Salesforce check is due
    with round_trips() as counter:
        resp = client.get("/api/me", headers=active.headers)
    assert resp.status_code == 401 and resp.json["error"]["code"] == "token_revoked"
    assert counter.count == 1
    with app.app_context():
        # The revoked token did not mark the login as checked: the user's live sessions still get it.
        assert not services().store.redis.exists(marker)
