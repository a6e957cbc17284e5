"""The mass activation job: addresses slice by slice, progress n of N and results kept in Redis."""

from __future__ import annotations

import logging
import time
from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.worker import Worker

from backend.connectors.salesforce.directory import active_users
from backend.extensions import QUEUE_SYNC, services
from backend.jobs.context import worker_app
from backend.sync.mass import SliceContext, activate_slice, admin_client, result, undo_if_disconnected
from backend.sync.org_providers import ORG_PROVIDERS

log = logging.getLogger(__name__)

# People decided per slice: one SOQL query and 20 Graph $batch calls a slice, progress saved after each.
SLICE = 200
# 10,000 people take minutes (one Salesforce sign-in each); anything far longer is stuck.
JOB_TIMEOUT_SECONDS = 3 * 3600
# The address list that stands for "everyone active in the org's Salesforce".
ALL = "*"


def job_id(activation_id: str) -> str:
    """The RQ job id of an activation."""
    return f"activation-{activation_id}"


def enqueue_activation(activation_id: str) -> None:
    """Queue the activation's job (its id is the activation's)."""
    services().queue(QUEUE_SYNC).enqueue(
        run_activation, args=(activation_id,), job_id=job_id(activation_id), at_front=True,
        job_timeout=JOB_TIMEOUT_SECONDS, result_ttl=0, failure_ttl=7 * 24 * 3600,
        description=f"mass activation {activation_id}")


def run_activation(activation_id: str) -> dict[str, Any]:
    """RQ job: activate every address of the activation (errors propagate; the activation is marked failed)."""
    with worker_app().app_context():
        svc = services()
        store, settings, clients = svc.store, svc.settings, svc.clients
        activation = store.activations.get(activation_id)
        if activation is None or activation.state == "done":
            return {"status": "skipped"}
        admin = store.users.get(activation.admin_uid)
        access = store.org_access.get(activation.org_id)
        provider = ORG_PROVIDERS.get(activation.provider)
        if admin is None or admin.org_id != activation.org_id or provider is None or not provider.ready(access):
            store.activations.set_state(activation_id, "failed")
            return {"status": "failed", "reason": "no admin or no org access"}
        store.activations.set_state(activation_id, "running")
        try:
            addresses = store.activations.addresses(activation_id)
            if addresses == [ALL]:
                addresses = _everyone(admin)
                store.activations.resolve(activation_id, addresses)
            done = len(store.activations.results(activation_id))  # a retried job goes on where it stopped
            ctx = SliceContext(admin=admin, provider=provider, access=access, started=time.time(),
                               total=len(addresses))
            try:
                for start in range(done, len(addresses), SLICE):
                    results = activate_slice(store, settings, clients, ctx, addresses[start:start + SLICE], start)
                    undone = undo_if_disconnected(store, ctx, activation.org_id, results)
                    store.activations.add_results(activation_id, undone or results)
                    if undone is not None:
                        # The admin disconnected the access: nobody else is turned on with it.
                        rest = addresses[start + SLICE:]
                        store.activations.add_results(activation_id,
                                                      [result(a, "access_disconnected") for a in rest])
                        store.activations.set_state(activation_id, "failed")
                        log.warning("mass activation stopped: org access disconnected id=%s", activation_id)
                        return {"status": "failed", "reason": "org access disconnected"}
            finally:
                ctx.close()
        except BaseException:
            store.activations.set_state(activation_id, "failed")
            raise
        store.activations.set_state(activation_id, "done")
        store.audit.record(activation.org_id, admin.id, "mass_activate", [], {
            "activation": activation_id, "total": len(addresses)})
        log.info("mass activation done id=%s total=%d", activation_id, len(addresses))
        return {"status": "done", "total": len(addresses)}


def job_lost(activation_id: str) -> bool:
    """True when a ``running`` activation's job can no longer finish it (failed, stopped, gone, worker dead).

    A SIGKILLed work horse (out of memory, the job timeout's kill) never reaches the job's own ``except``,
    and RQ runs no failure callback for it, so the activation would read "running" forever.
    """
    connection = services().queue(QUEUE_SYNC).connection
    try:
        job = Job.fetch(job_id(activation_id), connection=connection)
    except NoSuchJobError:
        return True  # a successful job is deleted (result_ttl=0) only after the state says done
    status = job.get_status(refresh=False)
    if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
        return True
    if status == JobStatus.STARTED and job.worker_name:
        # The whole worker died: its job stays "started" until RQ's cleanup, its worker key expires first.
        return not connection.exists(Worker.redis_worker_namespace_prefix + job.worker_name)
    return False


def _everyone(admin: Any) -> list[str]:
    svc = services()
    client = admin_client(svc.settings, svc.store, svc.clients, admin)
    try:
        return sorted({u.email.lower() for u in active_users(client)})
    finally:
        client.close()
