"""Storms: the services say "slow down" and the run does as it is told, then a later run logs everything.

* Graph 429 / 503 and Gmail 429 / 503 with a short Retry-After: waited out inside the run (bounded by
  ``GRAPH_MAX_WAIT_SECONDS`` / ``GOOGLE_MAX_WAIT_SECONDS``).
* A longer hint (Graph 429 / 503, Gmail 429 / 503) or EWS ``ErrorServerBusy`` with its ``BackOffMilliseconds``: the run
  ends at once with ``throttled``, the job's retry waits at least what the service asked, and the
  retry completes.
* Salesforce ``REQUEST_LIMIT_EXCEEDED``: the org's background runs back off, the pane still answers,
  and Sync now works once the limit clears.

The connector-level translation (a 429 becomes ``Throttled(retry_after)``) is
``tests/connectors/test_mailbox_protocol.py``; the engine's backoff with an in-memory mailbox is
``tests/sync/test_engine.py``. Here: the real connectors, the RQ job, the fakes, and at the end
every email in Salesforce once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from backend.extensions import services
from backend.jobs.sync import job_status
from backend.store.mailboxes import SyncState
from tests.e2e import SyncEnv
from tests.reliability import service_env as shared
from tests.reliability.service_env import (
    assert_logged_once,
    background_run,
    retries_due,
    run_jobs,
    seed_mail,
)

# The shared fixtures, bound here so pytest finds them for this module's tests.
provider = shared.provider
service_env_factory = shared.service_env_factory

# The harness's in-run wait limit (seconds): a hint above it ends the run, at or below it is waited out.
MAX_WAIT = 1
RETRY_AFTER = 3.0


def throttles_seen(env: SyncEnv) -> int:
    """How many "slow down" answers the mailbox's fake gave so far."""
    h: Any = env.harness
    if env.harness.provider == "microsoft":
        return len(h.graph.throttled_at)
    if env.harness.provider == "google":
        return sum(rule.hits for rule in h.gmail.faults.rules if rule.kind in ("429", "503"))
    return h.state.operations.count("ErrorServerBusy")


def busy_twice(env: SyncEnv, kind: str) -> None:
    """The next two answers say "busy, come back in RETRY_AFTER seconds"."""
    h: Any = env.harness
    if kind == "ErrorServerBusy":
        h.inject_failure("throttle", times=2, retry_after=RETRY_AFTER)  # BackOffMilliseconds
    elif env.harness.provider == "microsoft":
        h.graph.inject(kind, 2, retry_after=RETRY_AFTER)
    else:
        h.gmail.faults.inject(kind, 2, retry_after=RETRY_AFTER)


@pytest.mark.parametrize(("provider", "kind"), [("exchange", "ErrorServerBusy"), ("microsoft", "429"),
                                                ("microsoft", "503"), ("google", "429"), ("google", "503")],
                         indirect=["provider"])
def test_a_throttling_storm_is_retried_no_sooner_than_asked_and_a_later_run_logs_everything(
        provider: str, kind: str, service_env_factory: Callable[..., SyncEnv]) -> None:
    env = service_env_factory(harness_kwargs=None if provider == "exchange" else {"max_wait": MAX_WAIT})
    seeded = seed_mail(env, 4, "storm") + seed_mail(env, 2, "storm-sent", folder="sent")
    env.activate()
    # Two answers in a row say "busy, come back in 3 s": longer than the run may wait, so each
    # attempt ends and is retried.
    busy_twice(env, kind)
    attempts: list[tuple[float, float, float]] = []  # (attempt started, ended, retry scheduled at)
    began = time.monotonic()
    for _ in range(4):
        started = time.time()
        run_jobs(env)
        ended = time.time()
        record = env.mailbox().last_run
        assert record is not None
        if record["status"] == "ok":
            break
        assert record["error"]["code"] == "throttled", record
        # Bounded: the attempt gave up at once rather than sleeping through the hint.
        assert record["duration_ms"] < (MAX_WAIT + 3) * 1000, record
        with env.app.app_context():
            assert job_status(env.uid) == "retry_scheduled"
            (at,) = retries_due(env.uid)
        attempts.append((started, ended, at))
    else:
        pytest.fail(f"no run completed: {env.runs()[:3]}")
    # Exactly one attempt per "busy" answer: no retry came early (the gate would have refused it,
    # costing an attempt) and none was lost.
    assert len(attempts) == 2 and throttles_seen(env) == 2
    for started, ended, at in attempts:
        # RQ schedules to the whole second: the hint, less that rounding; and not much longer.
        assert started + RETRY_AFTER - 1.0 <= at <= ended + RETRY_AFTER + 1.0
    assert time.monotonic() - began < 30
    mailbox = env.mailbox()
    assert mailbox.state is SyncState.RUNNING and mailbox.auth_failures == 0 and mailbox.error is None
    assert_logged_once(env, seeded)


@pytest.mark.parametrize(("provider", "kind"), [("microsoft", "429"), ("microsoft", "503"), ("google", "429"),
                                                ("google", "503")],
                         indirect=["provider"])
def test_a_short_retry_after_is_waited_out_within_the_run(provider: str, kind: str,
                                                          service_env_factory: Callable[..., SyncEnv]) -> None:
    env = service_env_factory(harness_kwargs={"max_wait": 5})
    seeded = seed_mail(env, 4, "short")
    env.activate()
    h: Any = env.harness
    # Three answers in a row: "busy, retry after 1 s" (within the 5 s the run may wait).
    if provider == "microsoft":
        h.graph.inject(kind, 3, retry_after=1)
    else:
        h.gmail.faults.inject(kind, 3, retry_after=1)
    began = time.monotonic()
    run_jobs(env)
    took = time.monotonic() - began
    (record,) = env.runs()  # one run, no retry
    assert record["status"] == "ok", record
    assert throttles_seen(env) == 3
    assert took >= 1.0  # it did wait as told (the gate holds every request of the mailbox back)
    assert took < 3 * 5 + 5  # and no longer than the bounded waits allow
    assert_logged_once(env, seeded)


@pytest.mark.parametrize("provider", ["microsoft"], indirect=True)
def test_request_limit_exceeded_backs_the_org_off_the_pane_answers_and_sync_now_works_after(
        service_env_factory: Callable[..., SyncEnv]) -> None:
    env = service_env_factory()
    first = seed_mail(env, 3, "before-limit")
    env.activate()
    run_jobs(env)
    assert_logged_once(env, first)
    assert env.session is not None
    headers = env.session.headers

    later = seed_mail(env, 3, "during-limit")
    env.sf.limit_exceeded = True  # every call: 403 REQUEST_LIMIT_EXCEEDED
    assert background_run(env)
    run_jobs(env)
    record = env.mailbox().last_run
    assert record is not None and record["status"] == "error"
    assert record["error"]["code"] == "api_limit_exceeded", record
    with env.app.app_context():
        assert job_status(env.uid) is None  # not retried: the whole org waits, not this job
        org = services().store.orgs.get(env.mailbox().org_id)
        assert org.api_backoff_level == 1 and org.api_backoff_until > time.time() + 1700
        assert "inbox" in services().store.mailboxes.cursors(env.uid)  # the old cursor, not past the unwritten

    # The pane keeps working while the org is over its limit, and says why sync is slower.
    pane = env.client.get("/api/sync", headers=headers)
    assert pane.status_code == 200, pane.json
    body: Any = pane.json
    assert body["state"] == "running" and body["backoff"]["reason"] == "salesforce_api_budget"
    assert body["last_run"]["error"]["code"] == "api_limit_exceeded"

    # A background run due meanwhile holds off without a single Salesforce call.
    env.sf.reset_calls()
    assert background_run(env)
    run_jobs(env)
    assert env.sf.calls == []
    with env.app.app_context():
        assert services().store.schedule.next_of(env.uid) == pytest.approx(org.api_backoff_until)

    # The limit clears; Sync now (the pane's button) runs at once and logs what waited, once.
    env.sf.limit_exceeded = False
    now = env.client.post("/api/sync/run", headers=headers)
    assert now.status_code == 202 and now.json is not None and now.json["queued"] is True
    run_jobs(env)
    done = env.mailbox().last_run
    assert done is not None and done["status"] == "ok" and done["counts"]["emails_written"] == 3, done
    assert_logged_once(env, first + later)
    pane = env.client.get("/api/sync", headers=headers)
    assert pane.status_code == 200 and pane.json is not None
    assert pane.json["last_run"]["status"] == "ok" and pane.json["error"] is None
