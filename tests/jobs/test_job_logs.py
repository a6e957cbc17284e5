"""No mailbox id in clear in RQ's job descriptions or in any log line of a job: its hash instead.

Real jobs run by RQ's SimpleWorker with every record of the process captured (ours, RQ's worker and
job loggers), read as messages, as the captured text (tracebacks included) and as JSON lines.
"""

from __future__ import annotations

import logging

import pytest
from rq.job import Job

from backend.errors import Unavailable
from backend.extensions import QUEUE_NOTIFY, QUEUE_SYNC, services
from backend.jobs.failures import enqueue_notice
from backend.jobs.push import enqueue_push_job, ensure_push
from backend.jobs.sync import enqueue_sync, job_id_for
from backend.observability.logs import JsonFormatter, mailbox_hash
from tests.helpers import run_queued
from tests.sfhelpers import SalesforceUser
from tests.sync.items import ListMailbox, mail


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record: its message, the captured text (with tracebacks) and its JSON line."""
    json_lines = JsonFormatter()
    return "\n".join([caplog.text, *(r.getMessage() for r in caplog.records),
                      *(json_lines.format(r) for r in caplog.records)])


def test_a_run_job_logs_the_mailbox_hash_never_its_id(sf: SalesforceUser, box: ListMailbox,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    uid, hashed = sf.uid, mailbox_hash(sf.uid)
    caplog.set_level(logging.DEBUG)
    sf.data.add_contact("bob@customer.example")
    box.add("inbox", mail())
    assert enqueue_sync(uid, interactive=True)
    job = Job.fetch(job_id_for(uid), connection=services().redis_raw)
    assert job.description == f"sync mailbox={hashed}"
    run_queued()
    box.error = Unavailable(f"down for {uid}")  # an error naming the mailbox: RQ logs its traceback
    assert enqueue_sync(uid, interactive=True)
    run_queued()
    logged = _logged(caplog)
    # RQ's own lines were captured (the job started, the job failed with its traceback) ...
    rq_lines = [r.getMessage() for r in caplog.records if r.name.startswith("rq.")]
    assert any("sync mailbox=" + hashed in line for line in rq_lines)
    assert any("exception raised while executing" in line for line in rq_lines)
    assert any(r.name == "backend.sync.engine" for r in caplog.records)
    # ... and none of them, nor ours, names the mailbox: its hash instead.
    assert uid not in logged
    assert hashed in logged


def test_push_and_notice_jobs_describe_the_mailbox_by_its_hash(sf: SalesforceUser,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    uid, hashed = sf.uid, mailbox_hash(sf.uid)
    caplog.set_level(logging.DEBUG)
    assert enqueue_push_job(ensure_push, uid, "ensure")
    assert enqueue_notice(uid, "auth")
    raw = services().redis_raw
    push = Job.fetch(f"push-ensure-{uid}", connection=raw)
    notice = Job.fetch(f"notify-{uid}-auth", connection=raw)
    assert (push.description, notice.description) == (f"push ensure mailbox={hashed}", f"notify auth mailbox={hashed}")
    run_queued(QUEUE_SYNC, QUEUE_NOTIFY)
    logged = _logged(caplog)
    assert uid not in logged and hashed in logged
