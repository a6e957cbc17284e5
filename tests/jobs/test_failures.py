"""A run refused on authentication while its mailbox stopped for another reason keeps that reason."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from backend import create_app
from backend.admin import actions
from backend.admin.digest import digest_for
from backend.errors import AuthRevoked
from backend.extensions import QUEUE_NOTIFY, services
from backend.jobs.context import use_app
from backend.jobs.failures import record_auth_failure
from backend.store.mailboxes import SyncState
from backend.store.users import User
from backend.sync.org_access import ORG_ERROR, ORG_MESSAGE, resume_org

ORG = "00DORG"


@pytest.fixture
def job_app(app_config: dict[str, Any], redis_client: Any) -> Iterator[Flask]:
    """The app as the worker's process app, three failures in a row to disable."""
    app = create_app({**app_config, "MAX_AUTH_FAILURES": "3"})
    use_app(app)
    try:
        with app.app_context():
            yield app
    finally:
        use_app(None)


def running(uid: str = "u1") -> None:
    """Alice, syncing her Exchange mailbox."""
    store = services().store
    store.users.save(User(id=uid, org_id=ORG, sf_user_id="005X", email="alice@acme.example", display_name="Alice"))
    store.mailboxes.ensure(uid, ORG)
    store.mailboxes.activate(uid, "exchange", "alice@acme.example")
    store.orgs.update(ORG, admin_email="admin@acme.example")


@pytest.mark.parametrize("failures", [1, 3])
def test_a_run_in_flight_keeps_the_administrators_disable(job_app: Flask, failures: int) -> None:
    running()
    store = services().store
    assert actions.act(store, "u1", "disable").status == "ok"
    for _ in range(failures):
        assert record_auth_failure("u1", AuthRevoked("The server refused the password."), "mailbox") == 0
    mailbox = store.mailboxes.get("u1")
    assert mailbox is not None and mailbox.state is SyncState.DISABLED_ERROR and mailbox.admin_hold
    assert mailbox.error is not None and mailbox.error["code"] == "disabled_by_admin"
    assert mailbox.auth_failures == 0
    assert digest_for(store, ORG).disabled == []  # the admin is not told about their own Disable
    assert services().queue(QUEUE_NOTIFY).job_ids == []  # nor the person, with the wrong reason


def test_a_run_in_flight_keeps_the_org_connection_error_for_resume_org(job_app: Flask) -> None:
    running()
    store = services().store
    store.mailboxes.disable("u1", ORG_ERROR, ORG_MESSAGE)  # as org_access._disable does
    store.mailboxes.update("u1", error={"code": ORG_ERROR, "message": ORG_MESSAGE, "since": time.time(),
                                        "source": "org", "detail": "consent withdrawn"})
    record_auth_failure("u1", AuthRevoked("expired"), "salesforce")
    assert resume_org(store, ORG) == 1
    assert store.mailboxes.get("u1").state is SyncState.RUNNING  # type: ignore[union-attr]


def test_a_paused_mailbox_counts_the_streak_without_being_disabled(job_app: Flask) -> None:
    running()
    store = services().store
    store.mailboxes.pause("u1")
    for count in (1, 2, 3):
        assert record_auth_failure("u1", AuthRevoked("refused"), "mailbox") == count
    mailbox = store.mailboxes.get("u1")
    assert mailbox is not None and mailbox.state is SyncState.PAUSED
    assert mailbox.error is not None and mailbox.error["code"] == "mailbox_auth_failed"
    assert services().queue(QUEUE_NOTIFY).job_ids == []


def test_three_failures_disable_with_the_streak_and_one_notice(job_app: Flask) -> None:
    running()
    store = services().store
    for count in (1, 2, 3):
        assert record_auth_failure("u1", AuthRevoked("refused"), "mailbox") == count
    mailbox = store.mailboxes.get("u1")
    assert mailbox is not None and mailbox.state is SyncState.DISABLED_ERROR
    error = mailbox.error or {}
    assert error["code"] == "mailbox_auth_failed" and error["failures"] == 3
    assert error["since"] == error["first_failed_at"]
    assert services().queue(QUEUE_NOTIFY).job_ids == [f"notify-u1-{int(error['first_failed_at'])}"]
