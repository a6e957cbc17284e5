"""The Redis scan used by the "no mail content in Redis" checks sees inside RQ's packed job data and results."""

from __future__ import annotations

import redis
from flask import Flask

from backend.extensions import QUEUE_SYNC, services
from tests.helpers import run_queued
from tests.sfhelpers import redis_text


def leaky_job(subject: str) -> None:
    """A job that quotes its argument in the traceback, as a careless error message would."""
    raise RuntimeError(f"could not log {subject[::-1]}")


def test_scan_reads_job_arguments_and_tracebacks(app: Flask, redis_client: redis.Redis) -> None:
    subject = "Confidential merger subject"
    with app.app_context():
        svc = services()
        job = svc.queue(QUEUE_SYNC).enqueue(leaky_job, args=(subject,), job_id="leaky", failure_ttl=600)
        raw = svc.redis_raw.hgetall(job.key)
        # RQ keeps the arguments compressed: a plain scan of the hash would not see the subject.
        assert subject.encode() not in raw[b"data"]
        assert subject in redis_text(redis_client)
        run_queued(QUEUE_SYNC)
        # RQ keeps the traceback in the job's result stream, compressed and base64 encoded.
        entries = svc.redis_raw.xrange(f"rq:results:{job.id}")
        assert entries and all(subject[::-1].encode() not in value for _, fields in entries
                               for value in fields.values())
    text = redis_text(redis_client)
    assert subject[::-1] in text  # the traceback, decompressed
