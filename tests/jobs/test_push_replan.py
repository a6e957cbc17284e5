"""A push notification meeting the mailbox's run still going: its run is planned again after it, as long as needed."""

from __future__ import annotations

from flask import Flask
from rq import SimpleWorker
from rq.job import Job, JobStatus

from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services
from backend.jobs.context import use_app
from backend.jobs.push import replan_push_run
from backend.jobs.sync import job_id_for

MID = "u" + "a1" * 12


def test_a_replan_that_finds_the_run_still_going_plans_the_next_one(app: Flask) -> None:
    # Found in review: the replan job tried to queue the next under its own (running) id, was
    # refused as a duplicate, and the change waited for the next poll (hours while push is healthy).
    use_app(app)
    try:
        with app.app_context():
            svc = services()
            running = svc.queue(QUEUE_SYNC).enqueue(len, args=([],), job_id=job_id_for(MID))
            running.set_status(JobStatus.STARTED)  # the mailbox's run is going
            interactive = svc.queue(QUEUE_INTERACTIVE)
            interactive.enqueue(replan_push_run, args=(MID,), job_id=f"push-replan-{MID}", result_ttl=0)
            SimpleWorker([interactive], connection=svc.redis_raw).work(burst=True)
            planned = interactive.scheduled_job_registry.get_job_ids()
            assert planned == [f"push-replan-{MID}-again"]
            # That one, due now and meeting the run still going, plans under the first id again: no end.
            again = Job.fetch(f"push-replan-{MID}-again", connection=svc.redis_raw)
            interactive.scheduled_job_registry.remove(again)
            interactive.enqueue_job(again)
            SimpleWorker([interactive], connection=svc.redis_raw).work(burst=True)
            assert f"push-replan-{MID}" in interactive.scheduled_job_registry.get_job_ids()
    finally:
        use_app(None)
