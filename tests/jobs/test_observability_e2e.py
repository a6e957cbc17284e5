"""A real sync run against the fakes moves the metrics, and its JSON log lines name no secret or content."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.extensions import services
from backend.observability.logs import JsonFormatter, mailbox_hash
from backend.observability.metrics import exposition
from tests.e2e import SyncEnv
from tests.helpers import prometheus_samples
from tests.jobs.conftest import jobs_in_process
from tests.runs import run_mailbox

CONTACT = "carol@customer.example"
TOKEN = "metrics-token-for-the-test-0123456789"
SUBJECT = "Confidential pricing for Carol"
# The service each harness's mailbox calls are counted under.
MAILBOX_SERVICE = {"exchange": "ews", "microsoft": "graph", "google": "google"}


@pytest.fixture
def env(env_factory: Callable[..., SyncEnv]) -> Iterator[SyncEnv]:
    """Alice logged in, a contact in Salesforce, sync on, METRICS_TOKEN set."""
    environment = env_factory(METRICS_TOKEN=TOKEN)
    environment.sf.add_contact(CONTACT, "Carol")
    environment.log_in()
    environment.activate()
    with jobs_in_process(environment):
        yield environment


def samples(env: SyncEnv) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The scrape of /metrics, parsed by prometheus_client's own parser: {(sample, labels): value}."""
    resp = env.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200, resp.status_code
    return prometheus_samples(resp.get_data(as_text=True))


def value(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_run_moves_the_counters_and_its_json_lines_carry_ids_but_no_secret(
        env: SyncEnv, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest) -> None:
    provider = request.node.callspec.params["env_factory"]
    env.harness.add_email("inbox", subject=SUBJECT, sender=CONTACT, to=[env.harness.address])
    with env.app.app_context():
        before = samples(env)
        with caplog.at_level(logging.INFO):
            record = run_mailbox(env.uid, interactive=True)
        after = samples(env)
        mailbox = services().store.mailboxes.get(env.uid)
        assert mailbox is not None
    assert record["status"] == "ok" and record["counts"]["written"] == 1
    outcome = {"outcome": "ok", "provider": mailbox.provider}
    assert value(after, "sidebar_sync_runs_total", **outcome) == value(before, "sidebar_sync_runs_total", **outcome) + 1
    assert value(after, "sidebar_sync_run_duration_seconds_count", provider=mailbox.provider) == \
        value(before, "sidebar_sync_run_duration_seconds_count", provider=mailbox.provider) + 1
    assert value(after, "sidebar_sync_items_total", result="written") >= \
        value(before, "sidebar_sync_items_total", result="written") + 1
    service = MAILBOX_SERVICE[provider]
    for svc_name in (service, "salesforce"):
        assert value(after, "sidebar_sync_outbound_requests_total", service=svc_name, status="2xx") > \
            value(before, "sidebar_sync_outbound_requests_total", service=svc_name, status="2xx"), svc_name
    if record["salesforce_calls"]:  # Salesforce reports the org's usage on its answers
        assert 0 < value(after, "sidebar_sync_org_api_budget_used_ratio", org_id=mailbox.org_id) < 1
    assert value(after, "sidebar_sync_queue_depth", queue="sync") >= 0
    assert ("sidebar_sync_most_overdue_seconds", ()) in after

    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    (run_line,) = [line for line in lines if line.get("event") == "sync_run"]
    assert run_line["run_id"] == record["id"] and run_line["mailbox"] == mailbox_hash(env.uid)
    assert run_line["org_id"] == mailbox.org_id and run_line["counts"]["written"] == 1
    text = "\n".join(formatter.format(r) for r in caplog.records)
    assert env.uid not in text and SUBJECT not in text and env.session.token not in text


@pytest.mark.parametrize("env_factory", ["microsoft"], indirect=True)
def test_a_worker_process_s_run_is_in_the_merged_scrape_and_its_json_log(
        env_factory: Callable[..., SyncEnv], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = env_factory(PROMETHEUS_MULTIPROC_DIR=str(directory), LOG_FORMAT="json")
    env.sf.add_contact(CONTACT, "Carol")
    env.harness.add_email("inbox", subject=SUBJECT, sender=CONTACT, to=[env.harness.address])
    env.log_in()
    env.activate()
    worker = env.worker()
    record = env.wait_runs(1)
    assert record["status"] == "ok" and record["counts"]["written"] == 1
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    scrape = prometheus_samples(exposition().decode())
    assert value(scrape, "sidebar_sync_runs_total", outcome="ok", provider="microsoft") == 1
    assert value(scrape, "sidebar_sync_outbound_requests_total", service="graph", status="2xx") > 0
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    (run_line,) = [line for line in lines if line.get("event") == "sync_run"]
    assert run_line["run_id"] == record["id"] and run_line["mailbox"] == mailbox_hash(env.uid)
    text = json.dumps(lines)
    assert env.uid not in text and SUBJECT not in text and env.session.token not in text
    # RQ's own lines too (plain text, its handlers): the job's description and id name the mailbox's hash.
    whole = worker.log()
    assert "sync mailbox=" + mailbox_hash(env.uid) in whole and env.uid not in whole


@pytest.mark.parametrize("env_factory", ["microsoft"], indirect=True)
def test_a_job_that_runs_nothing_is_counted_by_why(env: SyncEnv) -> None:
    with env.app.app_context():
        store = services().store
        before = samples(env)
        store.mailboxes.pause(env.uid)
        record = run_mailbox(env.uid)
        after = samples(env)
    assert record == {"status": "skipped", "reason": "paused"}
    labels = {"reason": "paused", "provider": "microsoft"}
    assert value(after, "sidebar_sync_runs_not_started_total", **labels) == \
        value(before, "sidebar_sync_runs_not_started_total", **labels) + 1
    # Not a run: the outcome counters are left alone.
    assert value(after, "sidebar_sync_runs_total", outcome="ok", provider="microsoft") == \
        value(before, "sidebar_sync_runs_total", outcome="ok", provider="microsoft")
