"""The "sync stopped" email: what it says, who gets it, once per incident, through a real SMTP sink."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from backend import create_app
from backend.extensions import QUEUE_NOTIFY, services
from backend.jobs.context import use_app
from backend.jobs.failures import record_auth_failure
from backend.jobs.notify import MailNotConfigured, send_disabled_notice, smtp_target
from backend.store.mailboxes import SyncState
from backend.store.users import User
from sandbox.https_client import HttpsClient
from sandbox.smtp import SmtpSink

SECRET = "Hunter2-Password!"


@pytest.fixture
def notify_app(app_config: dict[str, Any], smtp_sink: SmtpSink, redis_client: Any) -> Iterator[Flask]:
    """The app with SMTP pointed at the sink, as the worker's process app."""
    app = create_app({**app_config, "SMTP_URL": smtp_sink.url, "MAIL_FROM": "sync@sidebar.example",
                      "MAX_AUTH_FAILURES": "3"})
    app.test_client_class = HttpsClient
    use_app(app)
    try:
        with app.app_context():
            yield app
    finally:
        use_app(None)


def disabled_mailbox(uid: str = "u1", admin: str = "") -> str:
    """A user whose sync was just disabled after repeated auth failures; returns the incident."""
    store = services().store
    store.users.save(User(id=uid, org_id="00DORG", sf_user_id="005X", email="alice@acme.example",
                          display_name="Alice"))
    store.mailboxes.ensure(uid, "00DORG")
    store.mailboxes.activate(uid, "exchange", "alice@acme.example")
    store.secrets.put("mailbox", uid, "exchange_password", SECRET)
    if admin:
        store.orgs.update("00DORG", admin_email=admin)
    from backend.errors import AuthRevoked

    for _ in range(services().settings.MAX_AUTH_FAILURES):
        record_auth_failure(uid, AuthRevoked("The server refused the password."), "mailbox")
    mailbox = store.mailboxes.get(uid)
    assert mailbox is not None and mailbox.state is SyncState.DISABLED_ERROR
    return str(int(mailbox.error["first_failed_at"]))  # type: ignore[index]


@pytest.mark.parametrize("url, host, port, tls, user, password", [
    ("smtp://mail.example:2525", "mail.example", 2525, False, "", ""),
    ("smtp://relay.example", "relay.example", 25, False, "", ""),
    ("smtps://u%40x:p%3Aw@mail.example", "mail.example", 465, True, "u@x", "p:w"),
])
def test_smtp_url(url: str, host: str, port: int, tls: bool, user: str, password: str) -> None:
    target = smtp_target(url)
    assert (target.host, target.port, target.tls, target.username, target.password) == (host, port, tls, user,
                                                                                        password)


@pytest.mark.parametrize("url", ["http://mail.example", "smtp://", "mail.example:25"])
def test_bad_smtp_url(url: str) -> None:
    with pytest.raises(MailNotConfigured):
        smtp_target(url)


def test_disable_enqueues_one_notice_and_the_notice_is_sent_once(notify_app: Flask, smtp_sink: SmtpSink) -> None:
    incident = disabled_mailbox(admin="admin@acme.example")
    queue = services().queue(QUEUE_NOTIFY)
    assert queue.job_ids == [f"notify-u1-{incident}"]
    # More failures (a run that was already in flight) neither re-disable nor re-notify.
    from backend.errors import AuthRevoked

    record_auth_failure("u1", AuthRevoked("again"), "mailbox")
    assert queue.job_ids == [f"notify-u1-{incident}"]

    assert send_disabled_notice("u1", incident) is True
    assert send_disabled_notice("u1", incident) is False  # one email per incident
    (captured,) = smtp_sink.wait_for(1)
    message = captured.message
    assert sorted(captured.rcpt_tos) == ["admin@acme.example", "alice@acme.example"]
    assert message["To"] == "alice@acme.example" and message["Cc"] == "admin@acme.example"
    assert message["From"] == "sync@sidebar.example"
    body = message.get_content()
    assert "alice@acme.example" in body
    assert "Exchange no longer accepts the saved sign-in" in body
    assert "https://localhost:3000/taskpane.html#sync-settings" in body
    assert "Reconnect" in body and "3 times in a row since" in body
    assert SECRET not in body and SECRET not in message.as_string()


def test_no_notice_after_reconnect(notify_app: Flask, smtp_sink: SmtpSink) -> None:
    incident = disabled_mailbox()
    services().store.mailboxes.activate("u1", "exchange", "alice@acme.example")
    assert send_disabled_notice("u1", incident) is False
    time.sleep(0.2)
    assert smtp_sink.messages == []


def test_starttls_and_login(app_config: dict[str, Any], smtp_sink_tls: SmtpSink, redis_client: Any) -> None:
    app = create_app({**app_config, "SMTP_URL": smtp_sink_tls.url, "MAIL_FROM": "sync@sidebar.example"})
    use_app(app)
    try:
        with app.app_context():
            incident = disabled_mailbox()
            assert send_disabled_notice("u1", incident) is True
    finally:
        use_app(None)
    (captured,) = smtp_sink_tls.wait_for(1)
    assert smtp_sink_tls.logins == ["relay-user"]
    assert captured.rcpt_tos == ["alice@acme.example"]


def test_a_late_retry_after_reconnect_and_the_admins_disable_sends_nothing(notify_app: Flask,
                                                                         smtp_sink: SmtpSink) -> None:
    """The notice job was retried for hours (SMTP down); meanwhile the person reconnected and the admin disabled."""
    from backend.admin import actions

    incident = disabled_mailbox()
    store = services().store
    store.mailboxes.activate("u1", "exchange", "alice@acme.example")
    assert actions.act(store, "u1", "disable").status == "ok"
    assert send_disabled_notice("u1", incident) is False
    time.sleep(0.2)
    assert smtp_sink.messages == []


def test_a_new_streak_after_reconnect_is_its_own_one_email(notify_app: Flask, smtp_sink: SmtpSink) -> None:
    """The first incident's late retry says nothing once a second streak disabled the mailbox again."""
    from backend.errors import AuthRevoked

    first = disabled_mailbox()
    store = services().store
    store.mailboxes.activate("u1", "exchange", "alice@acme.example")
    time.sleep(1.1)  # incidents are named by the second of their first failure
    for _ in range(3):
        record_auth_failure("u1", AuthRevoked("refused again"), "mailbox")
    mailbox = store.mailboxes.get("u1")
    assert mailbox is not None and mailbox.state is SyncState.DISABLED_ERROR
    second = str(int(mailbox.error["first_failed_at"]))  # type: ignore[index]
    assert second != first
    assert send_disabled_notice("u1", first) is False
    assert send_disabled_notice("u1", second) is True
    smtp_sink.wait_for(1)
    time.sleep(0.2)
    assert len(smtp_sink.messages) == 1
