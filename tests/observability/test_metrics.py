"""GET /metrics: hidden without METRICS_TOKEN, bearer-protected, parseable, merged across processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from backend import create_app
from backend.extensions import services
from backend.observability.metrics import exposition
from sandbox.https_client import HttpsClient
from tests.helpers import prometheus_samples

TOKEN = "the-operators-metrics-token-0123456789"
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def metrics_app(app_config: dict[str, Any], redis_client: redis.Redis) -> Flask:
    """The app with METRICS_TOKEN set."""
    app = create_app({**app_config, "METRICS_TOKEN": TOKEN})
    app.test_client_class = HttpsClient
    return app


def test_metrics_is_not_there_without_a_token(client: Any) -> None:
    assert client.get("/metrics", headers={"Authorization": "Bearer anything"}).status_code == 404


@pytest.mark.parametrize("header", [None, "", f"Bearer {TOKEN}x", f"bearer{TOKEN}", TOKEN, f"Basic {TOKEN}",
                                    f"Bearer {TOKEN[:-1]}", "Bearer "])
def test_metrics_refuses_a_wrong_token(metrics_app: Flask, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = metrics_app.test_client().get("/metrics", headers=headers)
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    assert b"sidebar_sync" not in resp.data


def test_metrics_answers_parseable_text_with_the_gauges_read_from_redis(metrics_app: Flask) -> None:
    now = time.time()
    with metrics_app.app_context():
        svc = services()
        svc.store.schedule.set_next("mbx-overdue", now - 120)
        svc.store.schedule.set_next("mbx-later", now + 600)
        svc.redis.set(svc.store.schedule.tick_key, repr(now - 30))
    resp = metrics_app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    values = prometheus_samples(resp.get_data(as_text=True))
    assert values[("sidebar_sync_scheduled_mailboxes", ())] == 2
    assert 119 <= values[("sidebar_sync_most_overdue_seconds", ())] < 180
    assert values[("sidebar_sync_clock_last_tick_timestamp_seconds", ())] == pytest.approx(now - 30)
    assert values[("sidebar_sync_queue_depth", (("queue", "sync"),))] == 0


RECORD = """
import sys
from backend.observability import metrics
metrics.record_outbound("graph", int(sys.argv[1]))
metrics.record_run("ok", "microsoft", 2.0, {"written": 3, "filtered_by": {"blocklist": 1}}, 4)
metrics.record_api_usage("00Dorg", int(sys.argv[1]), 1000)  # the later process's reading wins
"""


def test_counters_of_two_processes_are_merged_in_multiprocess_mode(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    for status in (200, 429):
        subprocess.run([sys.executable, "-c", RECORD, str(status)], env=env, check=True, cwd=ROOT, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    values = prometheus_samples(exposition().decode())
    assert values[("sidebar_sync_outbound_requests_total", (("service", "graph"), ("status", "2xx")))] == 1
    assert values[("sidebar_sync_outbound_requests_total", (("service", "graph"), ("status", "4xx")))] == 1
    assert values[("sidebar_sync_throttled_total", (("service", "graph"),))] == 1
    assert values[("sidebar_sync_runs_total", (("outcome", "ok"), ("provider", "microsoft")))] == 2
    assert values[("sidebar_sync_items_total", (("result", "written"),))] == 6
    assert values[("sidebar_sync_items_skipped_total", (("reason", "blocklist"),))] == 2
    assert values[("sidebar_sync_salesforce_api_calls_total", ())] == 8
    assert values[("sidebar_sync_org_api_budget_used_ratio", (("org_id", "00Dorg"),))] == pytest.approx(0.429)


# A worker forking one horse after another, as RQ does, each horse recording a run.
HORSES = """
import os
from backend.jobs.worker import Worker
from backend.observability import metrics

class Horse(Worker):
    def __init__(self):  # no app: only the horse's entry point is under test
        pass

def perform(*args, **kwargs):
    metrics.record_run("ok", "exchange", 1.0, {"read": 1}, 0)
    os._exit(0)

Worker.__bases__[0].main_work_horse = perform  # what RQ's own entry point would run
for _ in range(3):
    child = os.fork()
    if child == 0:
        Horse().main_work_horse(None, None)
    os.waitpid(child, 0)
print(os.getpid())
"""


def test_an_rq_worker_s_horses_share_one_file_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", HORSES], env=env, check=True, cwd=ROOT, timeout=60,
                          capture_output=True, text=True)
    worker_pid = proc.stdout.split()[-1]
    # The worker's own (its unlabelled counters exist from import) and its horses' one set: none per horse.
    assert {p.name for p in tmp_path.glob("counter_*.db")} == {f"counter_{worker_pid}.db",
                                                               f"counter_rq-{worker_pid}.db"}
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    values = prometheus_samples(exposition().decode())
    assert values[("sidebar_sync_runs_total", (("outcome", "ok"), ("provider", "exchange")))] == 3
    assert values[("sidebar_sync_items_total", (("result", "read"),))] == 3
