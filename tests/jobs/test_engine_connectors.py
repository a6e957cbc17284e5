"""Runs in this process with the real mailbox connectors against their wire-level fakes.

No worker process here (those are ``test_sync_e2e.py``): the engine (``run_mailbox``) or RQ's
in-process ``SimpleWorker`` drives runs, so each case stays quick while the mailbox side is the
real Exchange or Graph connector and the credentials live encrypted in the real store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backend.connectors import MailboxContext, open_mailbox
from backend.connectors.graph import CACHE_SECRET
from backend.extensions import QUEUE_NOTIFY, services
from backend.jobs.sync import enqueue_sync, job_status
from backend.store.mailboxes import SyncState
from sandbox.smtp import SmtpSink
from tests.e2e import SyncEnv
from tests.helpers import run_queued
from tests.jobs.conftest import jobs_in_process
from tests.runs import run_mailbox

# Where the Microsoft identity client logs a refusal of our app's credentials.
SIGNIN_LOG = "backend.connectors.graph.signin_errors"

CONTACT = "carol@customer.example"


@pytest.fixture
def env(env_factory: Callable[..., SyncEnv]) -> Iterator[SyncEnv]:
    """Alice logged in, a contact in Salesforce, sync activated for the harness's mailbox."""
    environment = env_factory()
    environment.sf.add_contact(CONTACT, "Carol")
    environment.log_in()
    environment.activate()
    with jobs_in_process(environment):
        yield environment


@pytest.mark.parametrize("action", ["mark", "delete"])
def test_a_meeting_the_user_organised_and_cancelled_is_cancelled_in_salesforce(env: SyncEnv, action: str) -> None:
    start = datetime.now(tz=UTC).replace(microsecond=0) + timedelta(days=2)
    with env.app.app_context():
        store = services().store
        mailbox = store.mailboxes.get(env.uid)
        assert mailbox is not None
        store.mailboxes.update(env.uid, settings={**mailbox.settings, "cancelled_events": action})
        remote_id = env.harness.add_event(subject="Quarterly review", start=start, end=start + timedelta(hours=1),
                                          organizer=env.harness.address, attendees=[CONTACT], uid="UID-review")
        first = run_mailbox(env.uid, interactive=True)
        assert first["counts"]["events_written"] == 1
        (logged,) = env.sf.all("Event")
        assert logged["Subject"] == "Quarterly review"
        # The organiser cancels: the meeting leaves their calendar (the connector reports a deletion).
        env.harness.delete_event(remote_id)
        env.sf.reset_calls()
        second = run_mailbox(env.uid, interactive=True)
    assert second["status"] == "ok" and second["counts"]["deletions"] == 1
    assert second["counts"]["events_cancelled"] == 1
    if action == "mark":
        assert [e["Subject"] for e in env.sf.all("Event")] == ["Canceled: Quarterly review"]
    else:
        assert env.sf.all("Event") == []
    assert len(env.sf.calls) == 2 and len(env.sf.write_calls) == 1  # one lookup, one write


@pytest.mark.parametrize("env_factory", ["microsoft"], indirect=True)
def test_an_expired_app_secret_fails_runs_transiently_never_counts_and_notifies_nobody(
        env: SyncEnv, smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture) -> None:
    harness: Any = env.harness
    with env.app.app_context():
        run_queued()  # the first run, queued by activation
        assert env.mailbox().last_run["status"] == "ok"  # type: ignore[index]
        # The app's client secret expires at Microsoft: every token request now answers invalid_client.
        harness.ms.client_secret = "rotated-by-the-admin"
        harness.ms.expire_access_tokens()
        limit = services().settings.MAX_AUTH_FAILURES
        caplog.set_level(logging.ERROR, logger=SIGNIN_LOG)
        for _ in range(limit + 1):
            assert enqueue_sync(env.uid, interactive=True)  # Sync now, or the schedule
            run_queued()
            mailbox = env.mailbox()
            assert mailbox.last_run is not None and mailbox.last_run["error"]["code"] == "service_misconfigured"
            assert mailbox.state is SyncState.RUNNING and mailbox.auth_failures == 0 and mailbox.error is None
            # Not retried within the job (every mailbox retrying would hammer Microsoft); still scheduled.
            assert job_status(env.uid) is None
            assert services().store.schedule.next_of(env.uid) is not None
        assert services().queue(QUEUE_NOTIFY).job_ids == []
    assert smtp_sink.messages == []
    errors = [r for r in caplog.records if r.name == SIGNIN_LOG and r.levelno == logging.ERROR]
    assert len(errors) == limit + 1
    assert "rotated-by-the-admin" not in caplog.text


@pytest.mark.parametrize("env_factory", ["microsoft"], indirect=True)
def test_deactivate_during_a_run_is_not_undone_by_a_token_refresh(env: SyncEnv) -> None:
    harness: Any = env.harness
    with env.app.app_context():
        store = services().store
        run_mailbox(env.uid, interactive=True)
        assert store.secrets.get("mailbox", env.uid, CACHE_SECRET)
        harness.ms.expire_access_tokens()  # this run refreshes its token, and writes the cache back

        def open_then_deactivate(provider: str, ctx: MailboxContext) -> Any:
            real_get = ctx.secrets.get

            def get(name: str) -> str | None:
                value = real_get(name)
                # The person presses Deactivate right after the run loaded its credentials.
                store.mailboxes.deactivate(env.uid)
                return value

            ctx.secrets.get = get  # type: ignore[method-assign]
            return open_mailbox(provider, ctx)

        services().clients.mailbox_factory = open_then_deactivate
        record = run_mailbox(env.uid, interactive=True)
        assert harness.ms.token_requests[-1] == "refresh_token"  # the refresh happened, after Deactivate
        assert record["stopped"] == "deactivated"
        mailbox = store.mailboxes.get(env.uid)
        assert mailbox is not None and mailbox.state is SyncState.DEACTIVATED
        # Nothing of the mailbox's credentials came back.
        assert store.secrets.get("mailbox", env.uid, CACHE_SECRET) is None
        assert store.mailboxes.cursors(env.uid) == {}
