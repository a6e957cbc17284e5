"""Refusals: one record refused inside a batch, and sign-ins refused (``invalid_grant``).

* Salesforce refuses one record of a Composite write (a validation rule): the rest of the batch
  commits in the same call, the refused one is quarantined with Salesforce's reason and shown in the
  pane, and no later run writes anything twice.
* Salesforce refuses the refresh token: flagged in that one run (the pane's sessions end, the error
  says Salesforce); after the person signs in again the next run logs what waited, once.
* The mailbox's own token or password is refused (per provider): flagged in that one run; after
  Reconnect the run resumes from the saved cursors, with no duplicate.

Disabling after ``MAX_AUTH_FAILURES`` and the incident email are ``tests/jobs/test_sync_e2e.py``;
the engine's quarantine with an in-memory mailbox is ``tests/sync/test_engine.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from backend.extensions import services
from backend.store.mailboxes import SyncState
from sandbox.salesforce_rest import Rule
from tests.e2e import SyncEnv, renewed_secrets
from tests.reliability import service_env as shared
from tests.reliability.service_env import assert_logged_once, job_of, run_jobs, seed_mail

# The shared fixtures, bound here so pytest finds them for this module's tests.
provider = shared.provider
service_env = shared.service_env
service_env_factory = shared.service_env_factory

REFUSED_MESSAGE = "Emails from this customer are logged by hand"


def test_one_record_refused_in_a_batch_is_quarantined_and_the_rest_commits(service_env: SyncEnv) -> None:
    env = service_env
    seeded = seed_mail(env, 6, "batch")
    refused = seeded[2]
    env.sf.rules.append(Rule("EmailMessage", lambda r: r.get("MessageIdentifier") == refused, REFUSED_MESSAGE))
    env.activate()
    env.sf.reset_calls()
    run_jobs(env)
    record = env.mailbox().last_run
    assert record is not None and record["status"] == "ok", record
    assert record["counts"]["quarantined"] == 1 and record["counts"]["emails_written"] == 5
    # The first write call carried the whole batch: the five others committed beside the refusal
    # (the second adds their relations).
    assert [c.records_written for c in env.sf.write_calls][:1] == [5]
    expected = [m for m in seeded if m != refused]
    assert_logged_once(env, expected)
    with env.app.app_context():
        store = services().store
        (entry,) = store.quarantine.recent(env.uid)
        assert entry["key"] == store.quarantine.ref(refused) and entry["object"] == "EmailMessage"
        assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in entry["reason"] and REFUSED_MESSAGE in entry["reason"]
        # Quarantined, not "not now": the cursor moved past it.
        assert "inbox" in store.mailboxes.cursors(env.uid)
    assert env.session is not None
    pane: Any = env.client.get("/api/sync", headers=env.session.headers).json
    assert pane["quarantine"]["count"] == 1
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in str(pane["quarantine"]["items"])

    # Later runs write the new mail, and neither the refused email nor the others again.
    newer = seed_mail(env, 2, "batch-later", start=10)
    assert env.run_now()
    run_jobs(env)
    later = env.mailbox().last_run
    assert later is not None and later["status"] == "ok" and later["counts"]["emails_written"] == 2
    assert_logged_once(env, expected + newer)


@pytest.mark.parametrize("provider", ["microsoft"], indirect=True)
def test_salesforce_refusing_the_refresh_token_is_flagged_in_one_run_and_a_new_sign_in_resumes(
        service_env: SyncEnv) -> None:
    env = service_env
    first = seed_mail(env, 3, "sf-before")
    env.activate()
    run_jobs(env)
    assert_logged_once(env, first)
    assert env.session is not None
    old_session = env.session

    waiting = seed_mail(env, 3, "sf-waiting")
    sf_state = env.fake_salesforce.state
    sf_state.expire_access_tokens()
    sf_state.revoke_refresh_tokens("alice@acme.example")  # the token endpoint now answers invalid_grant
    assert env.run_now()
    run_jobs(env)
    mailbox = env.mailbox()
    assert mailbox.last_run is not None and mailbox.last_run["error"]["code"] == "salesforce_auth_failed"
    assert mailbox.error is not None and mailbox.error["code"] == "salesforce_auth_failed"
    assert mailbox.auth_failures == 1 and mailbox.state is SyncState.RUNNING
    with env.app.app_context():
        assert job_of(env.uid).retries_left == 0  # not retried: it needs the person
    # The pane's session ended at once (Salesforce no longer accepts the login it came from).
    gone = env.client.get("/api/sync", headers=old_session.headers)
    assert gone.status_code == 401 and gone.json is not None
    assert gone.json["error"]["code"] == "token_revoked"
    assert_logged_once(env, first)

    # Alice signs in to Salesforce again; the next run logs what waited, and nothing twice.
    env.log_in()
    assert env.run_now()
    run_jobs(env)
    mailbox = env.mailbox()
    assert mailbox.last_run is not None and mailbox.last_run["status"] == "ok", mailbox.last_run
    assert mailbox.last_run["counts"]["emails_written"] == 3
    assert mailbox.auth_failures == 0 and mailbox.error is None
    assert_logged_once(env, first + waiting)


def test_the_mailbox_refusing_its_credentials_is_flagged_in_one_run_and_reconnect_resumes(
        service_env_factory: Callable[..., SyncEnv]) -> None:
    env = service_env_factory()
    first = seed_mail(env, 3, "mbx-before")
    env.activate()
    run_jobs(env)
    assert_logged_once(env, first)
    with env.app.app_context():
        saved = services().store.mailboxes.cursors(env.uid)
    assert set(saved) == {"inbox", "sent", "calendar"}

    waiting = seed_mail(env, 2, "mbx-waiting")
    # invalid_grant for Google and Microsoft (refresh token revoked), a changed password for Exchange.
    env.harness.revoke_credentials()
    assert env.run_now()
    run_jobs(env)
    mailbox = env.mailbox()
    assert mailbox.last_run is not None and mailbox.last_run["error"]["code"] == "mailbox_auth_failed"
    assert mailbox.error is not None and mailbox.error["code"] == "mailbox_auth_failed"
    assert mailbox.auth_failures == 1 and mailbox.state is SyncState.RUNNING
    with env.app.app_context():
        assert job_of(env.uid).retries_left == 0
        assert services().store.mailboxes.cursors(env.uid) == saved  # kept for the resume
    assert env.session is not None
    pane: Any = env.client.get("/api/sync", headers=env.session.headers)
    assert pane.status_code == 200 and pane.json["error"]["code"] == "mailbox_auth_failed"

    # Reconnect (new password or consent): the first run after it resumes from the saved cursors.
    env.sf.reset_calls()
    env.activate(secrets=renewed_secrets(env.harness))
    run_jobs(env)
    mailbox = env.mailbox()
    assert mailbox.last_run is not None and mailbox.last_run["status"] == "ok", mailbox.last_run
    counts = mailbox.last_run["counts"]
    assert counts["read"] == 2 and counts["emails_written"] == 2 and counts["resynced_pages"] == 0, counts
    assert mailbox.auth_failures == 0 and mailbox.error is None and mailbox.state is SyncState.RUNNING
    assert_logged_once(env, first + waiting)
