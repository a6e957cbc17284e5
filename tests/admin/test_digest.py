"""The admins' daily digest, through a real SMTP sink: once a day for a broken org, never for a healthy one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from backend import create_app
from backend.extensions import services
from backend.jobs.digest import send_digests
from backend.store.users import user_id_for
from sandbox.smtp import SmtpSink, smtp_sink  # noqa: F401 - fixture
from tests.admin.helpers import ORG, OTHER_ORG, seed_user

DAY = 24 * 3600


@pytest.fixture
def mail_app(app_config: dict[str, Any], smtp_sink: SmtpSink, redis_client: Any) -> Iterator[Flask]:  # noqa: F811
    """The app with SMTP pointed at the sink."""
    app = create_app({**app_config, "SMTP_URL": smtp_sink.url, "MAIL_FROM": "sync@sidebar.example"})
    with app.app_context():
        yield app


def test_digest_once_a_day_for_a_broken_org_and_never_for_a_healthy_one(mail_app: Flask,
                                                                       smtp_sink: SmtpSink) -> None:  # noqa: F811
    store = services().store
    now = time.time()
    broken = seed_user(ORG, 1, state="disabled_error")
    seed_user(ORG, 2, caught_up_at=now - 2 * DAY, activated_at=now - 3 * DAY)  # no success for two days
    seed_user(ORG, 3, caught_up_at=now - 60)
    store.orgs.update(ORG, admin_email="it@acme.example")
    healthy = seed_user(OTHER_ORG, 4, caught_up_at=now - 60)
    store.orgs.update(OTHER_ORG, admin_email="it@other.example")

    assert send_digests(services(), now) == {"sent": 1, "quiet": 1}
    (captured,) = smtp_sink.messages
    assert captured.rcpt_tos == ["it@acme.example"]
    text = captured.message.get_content()
    assert "1 mailbox(es) disabled due to an error" in text and "1 mailbox(es) without a successful run" in text
    assert "user1@acme.example" in text and "user2@acme.example" in text and "user3@acme.example" not in text
    assert "https://localhost:3000/admin" in text
    # Later the same day: nothing more; the next day, again while it is still broken.
    assert send_digests(services(), now + 60)["sent"] == 0
    store.mailboxes.update(healthy, caught_up_at=now + DAY - 60)  # it kept syncing
    assert send_digests(services(), now + DAY)["sent"] == 1
    assert len(smtp_sink.messages) == 2
    # All is well again: nothing is sent.
    store.mailboxes.enable(broken)
    for uid in (broken, user_id_for(ORG, "005SEED00000002"), user_id_for(ORG, "005SEED00000003"), healthy):
        store.mailboxes.update(uid, caught_up_at=now + 2 * DAY)
    assert send_digests(services(), now + 2 * DAY + 60) == {"sent": 0, "quiet": 2}


def test_no_digest_without_an_admin_address(mail_app: Flask, smtp_sink: SmtpSink) -> None:  # noqa: F811
    seed_user(ORG, 1, state="disabled_error")
    assert send_digests(services(), time.time())["sent"] == 0
    assert smtp_sink.messages == []


def test_the_digest_is_a_cron_entry_of_the_clock() -> None:
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=None)  # type: ignore[arg-type]
    scheduler.load_config_from_file("backend.jobs.digest")
    assert [j.func_name for j in scheduler._cron_jobs if j.func_name.endswith("digest_tick")]
