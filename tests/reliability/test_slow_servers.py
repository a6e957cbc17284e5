"""Servers that answer slowly, or never: the timeouts and the run's deadline hold.

* A mail server that answers one request after longer than the request timeout, or never (a hang;
  for EWS a byte now and then, so the read never idles long enough to time out): the run ends
  within the request's bound plus a margin, as ``unavailable``, is retried, and the retry logs
  everything, once.
* Salesforce slower than the timeout over a write it then commits: the run ends in time, and the
  retry finds the late write by dedup and writes nothing twice.
* A mail server slow on every request, each under the request timeout but together past the run's
  deadline (``SYNC_RUN_DEADLINE_SECONDS``, the job timeout; two values, so the setting is what stops
  it): the run is stopped at the deadline, says ``timeout``, is retried, and the retry logs
  everything, once.

Request-level deadlines against a dripping server are ``tests/net/test_deadline.py`` and
``tests/connectors/test_exchange.py``; the job timeout with an in-memory mailbox is
``tests/jobs/test_sync_job.py``. Here: the whole run, per provider.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from backend.connectors.exchange.transport import REQUEST_DEADLINE_FACTOR
from backend.extensions import services
from backend.jobs.sync import job_status
from backend.store.mailboxes import SyncState
from tests.e2e import SyncEnv, wait_until
from tests.reliability import service_env as shared
from tests.reliability.service_env import assert_logged_once, logged_keys, retries_due, run_jobs, seed_mail

# The shared fixtures, bound here so pytest finds them for this module's tests.
provider = shared.provider
service_env_factory = shared.service_env_factory

TIMEOUT = 2  # seconds: OUTBOUND_TIMEOUT_SECONDS (Graph, Google, Salesforce) and EWS_TIMEOUT_SECONDS
MARGIN = 3.0
HANG = 60.0  # "never": far longer than any bound the run has


def slow_settings(provider_name: str) -> dict[str, Any]:
    """Short request timeouts for this provider's environment (a Salesforce write's too)."""
    timeouts = {"OUTBOUND_TIMEOUT_SECONDS": TIMEOUT, "SALESFORCE_WRITE_TIMEOUT_SECONDS": TIMEOUT}
    if provider_name == "exchange":
        return {"harness_kwargs": {"EWS_TIMEOUT_SECONDS": TIMEOUT}, **timeouts}
    return timeouts


def request_bound(provider_name: str, how: str) -> float:
    """The longest one request may take under these settings."""
    if provider_name == "exchange" and how == "never":
        return TIMEOUT * REQUEST_DEADLINE_FACTOR  # a dripping answer is cut at the request's deadline
    return TIMEOUT


def stall_next_request(env: SyncEnv, how: str) -> None:
    """The mail server's next request answers late ("slow") or not at all ("never")."""
    h: Any = env.harness
    late = TIMEOUT * 3
    if env.harness.provider == "exchange":
        if how == "slow":
            h.inject_failure("delay", retry_after=late)
        else:
            h.inject_failure("drip", retry_after=TIMEOUT / 4)  # never idle for a whole read timeout
    elif env.harness.provider == "microsoft":
        h.graph.inject("slow", 1, delay=late if how == "slow" else HANG)
    else:
        h.gmail.faults.inject("slow", 1, delay=late if how == "slow" else HANG)


@pytest.mark.parametrize("how", ["slow", "never"])
def test_a_mail_server_that_answers_late_or_never_ends_the_run_in_time_and_the_retry_completes(
        provider: str, how: str, service_env_factory: Callable[..., SyncEnv]) -> None:
    env = service_env_factory(**slow_settings(provider))
    seeded = seed_mail(env, 4, f"stall-{how}")
    env.activate()
    stall_next_request(env, how)
    began = time.monotonic()
    run_jobs(env)
    took = time.monotonic() - began
    record = env.mailbox().last_run
    assert record is not None and record["status"] == "error", record
    assert record["error"]["code"] == "unavailable", record
    # One stalled request's bound (the connector does not wait it out again and again), plus a margin.
    assert took < request_bound(provider, how) + MARGIN, f"{took:.1f} s"
    with env.app.app_context():
        assert job_status(env.uid) == "retry_scheduled"  # transient: retried
        assert retries_due(env.uid)
    run_jobs(env)
    done = env.mailbox().last_run
    assert done is not None and done["status"] == "ok", done
    mailbox = env.mailbox()
    assert mailbox.state is SyncState.RUNNING and mailbox.auth_failures == 0
    assert_logged_once(env, seeded)


def slow_every_request(env: SyncEnv, seconds: float) -> None:
    """Every request of the mail server takes ``seconds`` (under the request timeout)."""
    h: Any = env.harness
    if env.harness.provider == "exchange":
        h.state.failures.clear()
        if seconds:
            h.inject_failure("delay", times=200, retry_after=seconds)
    elif env.harness.provider == "microsoft":
        h.graph.latency = seconds
    else:
        h.gmail.faults.latency = seconds
        h.calendar.faults.latency = seconds


@pytest.mark.parametrize("deadline", [3, 5])
def test_a_run_slower_than_its_deadline_is_stopped_at_the_deadline_and_the_retry_completes(
        provider: str, deadline: int, service_env_factory: Callable[..., SyncEnv]) -> None:
    # The run's deadline (20 min in production), over a write timeout under it. The read timeouts
    # stay at their defaults, far above the slow requests (a Gmail batch waits once per part): only
    # the deadline can stop the run.
    kwargs: dict[str, Any] = {"SYNC_RUN_DEADLINE_SECONDS": deadline, "SALESFORCE_WRITE_TIMEOUT_SECONDS": TIMEOUT}
    if provider == "microsoft":
        kwargs["harness_kwargs"] = {"page_size": 1}  # a delta page per email: many requests
    env = service_env_factory(**kwargs)
    seeded = seed_mail(env, 4 * deadline, "deadline") + seed_mail(env, 4, "deadline-sent", folder="sent")
    env.activate()
    # Every request slow (a Graph $batch and a Gmail batch wait once per part), none past its timeout.
    slow_every_request(env, 0.3 if provider == "microsoft" else 1.0)
    began = time.monotonic()
    run_jobs(env)
    took = time.monotonic() - began
    record = env.mailbox().last_run
    assert record is not None and record["status"] == "error", record
    assert record["error"]["code"] == "timeout" and "took too long" in record["error"]["message"]
    assert deadline - 0.5 <= took < deadline + MARGIN, f"{took:.1f} s"
    with env.app.app_context():
        assert job_status(env.uid) == "retry_scheduled"
    slow_every_request(env, 0.0)
    with env.app.app_context():
        assert retries_due(env.uid)
    run_jobs(env)
    done = env.mailbox().last_run
    assert done is not None and done["status"] == "ok", done
    assert env.mailbox().state is SyncState.RUNNING
    assert_logged_once(env, seeded)


@pytest.mark.parametrize("provider", ["microsoft"], indirect=True)
def test_a_salesforce_slower_than_the_timeout_ends_the_run_in_time_and_the_retry_writes_nothing_twice(
        service_env_factory: Callable[..., SyncEnv]) -> None:
    # A write call waits longer than a read (180 s in production: 1,000 records on a busy org).
    env = service_env_factory(OUTBOUND_TIMEOUT_SECONDS=TIMEOUT, SALESFORCE_WRITE_TIMEOUT_SECONDS=TIMEOUT)
    seeded = seed_mail(env, 4, "sf-slow")
    env.activate()
    # Salesforce takes twice our timeout over each write, and commits it after we stopped waiting.
    env.sf.write_delay = TIMEOUT * 2
    began = time.monotonic()
    run_jobs(env)
    took = time.monotonic() - began
    record = env.mailbox().last_run
    assert record is not None and record["status"] == "error", record
    assert record["error"]["code"] == "unavailable" and record["error"]["source"] == "salesforce", record
    assert took < TIMEOUT + MARGIN, f"{took:.1f} s"
    with env.app.app_context():
        assert job_status(env.uid) == "retry_scheduled"
        assert "inbox" not in services().store.mailboxes.cursors(env.uid)  # the batch is read again
    # The write the run gave up on lands in Salesforce meanwhile.
    wait_until(lambda: len(logged_keys(env)) == len(seeded), 15, "the late write to commit")
    env.sf.write_delay = 0.0
    with env.app.app_context():
        assert retries_due(env.uid)
    run_jobs(env)
    done = env.mailbox().last_run
    assert done is not None and done["status"] == "ok", done
    assert done["counts"]["emails_written"] == 0 and done["counts"]["duplicates"] == len(seeded), done["counts"]
    assert_logged_once(env, seeded)
