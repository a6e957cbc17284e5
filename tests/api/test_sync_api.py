"""``/api/sync`` over HTTP: the state the pane shows and the actions (pause, resume, deactivate, run)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.connectors.mailbox import MailboxIdentity
from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services
from backend.jobs.sync import enqueue_sync, job_id_for
from backend.sync.activation import activate
from sandbox.login import LoggedIn, login

ADDRESS = "alice@acme.example"


@pytest.fixture
def session(app: Flask, client: FlaskClient, ca: Any, fake_salesforce: Any) -> LoggedIn:
    """Alice, logged in through the dialog."""
    return login(client, ca.ca_path, mailbox=ADDRESS)


@pytest.fixture
def active(app: Flask, session: LoggedIn) -> Iterator[LoggedIn]:
    """Alice with sync activated for an Exchange mailbox (the first run queued)."""
    with app.app_context():
        user = services().store.users.get(session.uid)
        assert user is not None
        mailbox = activate(services().store, user, "exchange", MailboxIdentity(ADDRESS),
                           {"login": ADDRESS, "ews_url": "https://mail.acme.example/EWS/Exchange.asmx"},
                           {"exchange_password": "pw-1"})
        enqueue_sync(mailbox.id, interactive=True)
    yield session


def queued(app: Flask, name: str) -> list[str]:
    """Job ids in a queue."""
    with app.app_context():
        return services().queue(name).job_ids


def test_requires_a_token(client: FlaskClient) -> None:
    assert client.get("/api/sync").status_code == 401
    assert client.post("/api/sync/run").status_code == 401


def test_not_activated(client: FlaskClient, session: LoggedIn) -> None:
    body = client.get("/api/sync", headers=session.headers).json
    assert body["state"] == "not_activated" and body["job"] is None and body["last_run"] is None
    assert body["quarantine"] == {"count": 0, "items": []} and body["recent_runs"] == []
    for action in ("pause", "resume", "deactivate", "run"):
        resp = client.post(f"/api/sync/{action}", headers=session.headers)
        assert resp.status_code == 409 and resp.json["error"]["code"] == "invalid_state"


def test_running_state_and_first_run_queued(app: Flask, client: FlaskClient, active: LoggedIn) -> None:
    body = client.get("/api/sync", headers=active.headers).json
    assert body["state"] == "running" and body["provider"] == "exchange" and body["mailbox"] == ADDRESS
    assert body["job"] == "queued" and body["running_now"] is False
    assert body["next_run"] is not None
    assert body["connection"] == {"login": ADDRESS, "ews_url": "https://mail.acme.example/EWS/Exchange.asmx"}
    assert "pw-1" not in str(body)
    assert queued(app, QUEUE_INTERACTIVE) == [job_id_for(active.uid)]


def test_sync_now_queues_once(app: Flask, client: FlaskClient, active: LoggedIn) -> None:
    with app.app_context():
        services().queue(QUEUE_INTERACTIVE).empty()  # the first run was taken
    first = client.post("/api/sync/run", headers=active.headers)
    assert first.status_code == 202 and first.json["queued"] is True
    second = client.post("/api/sync/run", headers=active.headers)
    assert second.status_code == 202 and second.json["queued"] is False  # already on its way
    assert queued(app, QUEUE_INTERACTIVE) == [job_id_for(active.uid)]


def test_pause_resume_deactivate(app: Flask, client: FlaskClient, active: LoggedIn) -> None:
    paused = client.post("/api/sync/pause", headers=active.headers)
    assert paused.status_code == 200 and paused.json["state"] == "paused" and paused.json["next_run"] is None
    with app.app_context():
        assert services().store.schedule.next_of(active.uid) is None
    assert client.post("/api/sync/pause", headers=active.headers).status_code == 409
    assert client.post("/api/sync/run", headers=active.headers).status_code == 409
    resumed = client.post("/api/sync/resume", headers=active.headers)
    assert resumed.status_code == 200 and resumed.json["state"] == "running" and resumed.json["next_run"]
    with app.app_context():
        assert services().store.mailboxes.save_cursors_if_connected(active.uid, {"inbox": "cursor-1"})
    gone = client.post("/api/sync/deactivate", headers=active.headers)
    assert gone.status_code == 200 and gone.json["state"] == "deactivated" and gone.json["next_run"] is None
    with app.app_context():
        store = services().store
        assert store.secrets.get("mailbox", active.uid, "exchange_password") is None
        assert store.mailboxes.cursors(active.uid) == {}
        assert store.schedule.next_of(active.uid) is None
        # The Salesforce login stays.
        assert store.secrets.get("user", active.uid, "sf_refresh") is not None
    assert client.get("/api/me", headers=active.headers).status_code == 200


def test_disabled_with_reason_and_reconnect_action(app: Flask, client: FlaskClient, active: LoggedIn) -> None:
    with app.app_context():
        store = services().store
        first = time.time() - 7200
        store.mailboxes.disable(active.uid, "mailbox_auth_failed", "Exchange refused the saved sign-in 6 time(s)")
        store.mailboxes.update(active.uid, auth_failures=6, error={
            "code": "mailbox_auth_failed", "message": "Exchange refused the saved sign-in 6 time(s) in a row",
            "since": first, "first_failed_at": first, "failures": 6, "source": "mailbox"})
    body = client.get("/api/sync", headers=active.headers).json
    assert body["state"] == "disabled_error" and body["state_label"] == "Sync is disabled due to an error"
    assert body["error"]["code"] == "mailbox_auth_failed" and body["error"]["action"] == "reconnect"
    assert body["error"]["since"].endswith("+00:00") and "first_failed_at" not in body["error"]
    assert body["auth_failures"] == 6 and body["max_auth_failures"] == 6
    resp = client.post("/api/sync/run", headers=active.headers)
    assert resp.status_code == 409 and "Reconnect" in resp.json["error"]["message"]


def test_backoff_usage_last_run_and_quarantine(app: Flask, client: FlaskClient, active: LoggedIn) -> None:
    record = {"id": "r1", "status": "ok", "counts": {"read": 5, "written": 3, "filtered": 1, "duplicates": 0,
                                                      "quarantined": 1, "matched": 4}, "salesforce_calls": 2,
              "mailbox_calls": 3, "error": None}
    with app.app_context():
        store = services().store
        user = store.users.get(active.uid)
        assert user is not None
        store.orgs.update(user.org_id, api_backoff_until=time.time() + 1800, api_backoff_level=1, api_used=85_000,
                          api_max=100_000, api_seen_at=time.time())
        store.mailboxes.update(active.uid, last_run=record)
        store.runs.record(active.uid, record)
        store.quarantine.add(active.uid, [{"key": "<m1@x>", "object": "EmailMessage", "reason": "RULE: no",
                                           "at": "2026-11-20T10:00:00+00:00", "subject": "must not be kept"}])
    body = client.get("/api/sync", headers=active.headers).json
    assert body["backoff"]["reason"] == "salesforce_api_budget" and body["backoff"]["level"] == 1
    assert body["api_usage"]["percent"] == 85.0 and body["api_usage"]["budget_percent"] == 80
    assert body["last_run"]["counts"]["written"] == 3 and body["recent_runs"] == [record]
    with app.app_context():
        ref = services().store.quarantine.ref("<m1@x>")
    assert body["quarantine"] == {"count": 1, "items": [{"key": ref, "object": "EmailMessage",
                                                         "reason": "RULE: no", "at": "2026-11-20T10:00:00+00:00"}]}
    # Sync now still works during a backoff.
    assert client.post("/api/sync/run", headers=active.headers).status_code == 202


def test_settings(client: FlaskClient, active: LoggedIn) -> None:
    resp = client.put("/api/sync/settings", headers=active.headers,
                      json={"sync_events": False, "blocklist": ["Lawyer@Firm.example", "@rival.example"],
                            "cancelled_events": "delete"})
    assert resp.status_code == 200
    settings = resp.json["settings"]
    assert settings["sync_events"] is False and settings["sync_emails"] is True
    assert settings["blocklist"] == ["lawyer@firm.example", "rival.example"]
    assert settings["cancelled_events"] == "delete"
    bad = client.put("/api/sync/settings", headers=active.headers, json={"blocklist": ["not an address!"]})
    assert bad.status_code == 400 and bad.json["error"]["field"] == "blocklist"


def test_echoed_org_defaults_keep_following_the_administrator(app: Flask, client: FlaskClient,
                                                              active: LoggedIn) -> None:
    """A client that sends the whole form (every unlocked field) chooses only what it changed."""
    with app.app_context():
        org_id = services().store.users.get(active.uid).org_id  # type: ignore[union-attr]
    body = {"sync_emails": True, "sync_events": True, "cancelled_events": "mark", "blocklist": ["noisy@vendor.example"]}
    assert client.put("/api/sync/settings", json=body, headers=active.headers).status_code == 200
    with app.app_context():
        services().store.orgs.update(org_id, sync_events=False, cancelled_events="delete")  # new unlocked defaults
    settings = client.get("/api/sync", headers=active.headers).json["settings"]
    assert settings["sync_events"] is False and settings["cancelled_events"] == "delete"
    assert settings["blocklist"] == ["noisy@vendor.example"]
    # A value off the default is the person's, and stays theirs when echoed later (even back at the default).
    assert client.put("/api/sync/settings", json={"sync_events": True}, headers=active.headers).status_code == 200
    assert client.put("/api/sync/settings", json={"sync_events": True, "blocklist": []},
                      headers=active.headers).status_code == 200
    with app.app_context():
        services().store.orgs.update(org_id, sync_events=True)
        services().store.orgs.update(org_id, sync_events=False)
    settings = client.get("/api/sync", headers=active.headers).json["settings"]
    assert settings["sync_events"] is True and settings["cancelled_events"] == "delete"


def test_background_queue_untouched_by_sync_now(app: Flask, client: FlaskClient, active: LoggedIn) -> None:
    assert queued(app, QUEUE_SYNC) == []


def test_sync_now_moves_a_waiting_background_run_to_the_front(app: Flask, client: FlaskClient,
                                                              active: LoggedIn) -> None:
    from backend.jobs.sync import enqueue_sync

    with app.app_context():
        services().queue(QUEUE_INTERACTIVE).empty()  # the first run was taken
        for i in range(3):
            services().queue(QUEUE_SYNC).enqueue("backend.jobs.sync.sync_mailbox", args=(f"other{i}",),
                                                 job_id=f"sync-other{i}")
        assert enqueue_sync(active.uid)  # the clock queued a background run behind the others
    assert client.get("/api/sync", headers=active.headers).json["job"] == "queued"
    now = client.post("/api/sync/run", headers=active.headers)
    assert now.status_code == 202 and now.json["queued"] is True  # it will run next
    assert queued(app, QUEUE_INTERACTIVE) == [job_id_for(active.uid)]
    assert queued(app, QUEUE_SYNC) == [f"sync-other{i}" for i in range(3)]
    again = client.post("/api/sync/run", headers=active.headers)
    assert again.status_code == 202 and again.json["queued"] is False  # already first in line
