"""An activation whose job died is reported failed, and one person's transient sign-in error is theirs only.

Found in review: a SIGKILLed work horse (RQ runs neither the job's ``except`` nor a failure callback)
left the activation "running" forever; one Unavailable from one person's JWT sign-in failed the job.
"""

from __future__ import annotations

from typing import Any

import pytest
from rq.job import Job, JobStatus
from rq.worker import Worker

from backend.connectors.salesforce import JwtCredentials
from backend.errors import Unavailable
from backend.extensions import QUEUE_SYNC, services
from backend.jobs import activation as activation_job
from tests.mass_env import MassEnv, address


def _started(mass: MassEnv) -> tuple[str, Job]:
    """An activation its job marked running, and that job (enqueued, not run)."""
    started = mass.post("/api/admin/activate", json={"provider": "microsoft", "users": [address("bob")]})
    assert started.status_code == 202, started.get_data(as_text=True)
    aid = started.json["job_id"]
    services().store.activations.set_state(aid, "running")
    job = Job.fetch(activation_job.job_id(aid), connection=services().queue(QUEUE_SYNC).connection)
    return aid, job


def _state(mass: MassEnv, aid: str) -> str:
    return str(mass.client.get(f"/api/admin/activations/{aid}").json["state"])


def test_a_queued_or_running_job_keeps_the_activation_running(mass: MassEnv) -> None:
    aid, job = _started(mass)
    assert _state(mass, aid) == "running"
    job.worker_name = "alive-worker"
    job.set_status(JobStatus.STARTED)
    job.save()
    connection = services().queue(QUEUE_SYNC).connection
    connection.set(Worker.redis_worker_namespace_prefix + "alive-worker", "1", ex=60)
    assert _state(mass, aid) == "running"


@pytest.mark.parametrize("how", ["failed", "gone", "worker_dead"])
def test_a_dead_job_makes_the_activation_failed(mass: MassEnv, how: str) -> None:
    aid, job = _started(mass)
    if how == "failed":  # what RQ records after "Work-horse terminated unexpectedly"
        job.set_status(JobStatus.FAILED)
    elif how == "gone":
        job.delete()
    else:
        job.worker_name = "killed-worker"
        job.set_status(JobStatus.STARTED)
        job.save()
    assert _state(mass, aid) == "failed"
    activation = services().store.activations.get(aid)
    assert activation is not None and activation.state == "failed"


def test_one_transient_sign_in_error_is_that_persons_result(mass: MassEnv, monkeypatch: Any) -> None:
    refresh = JwtCredentials.refresh

    def flaky(self: JwtCredentials, *args: Any, **kwargs: Any) -> Any:
        if self.username == address("bob"):
            raise Unavailable("Salesforce answered 503.")
        return refresh(self, *args, **kwargs)

    monkeypatch.setattr(JwtCredentials, "refresh", flaky)
    answer = mass.activate(["bob", "jill"])
    assert answer["state"] == "done"
    results = {r["address"]: r["result"] for r in answer["results"]}
    assert results == {address("bob"): "try_again", address("jill"): "activated"}
    assert services().store.mailboxes.get(mass.uid("bob")) is None


def test_an_activation_that_finished_while_it_was_read_stays_done(mass: MassEnv, monkeypatch: Any) -> None:
    from rq.exceptions import NoSuchJobError

    from backend.jobs import activation as activation_job

    aid, _ = _started(mass)

    class FinishedMeanwhile:
        """The job finishes between the read and the fetch: done, then RQ forgets it (result_ttl=0)."""

        @staticmethod
        def fetch(job_id: str, connection: Any) -> Any:
            services().store.activations.set_state(aid, "done")
            raise NoSuchJobError(job_id)

    monkeypatch.setattr(activation_job, "Job", FinishedMeanwhile)
    assert _state(mass, aid) == "done"
    assert services().store.activations.get(aid).state == "done"  # type: ignore[union-attr]
