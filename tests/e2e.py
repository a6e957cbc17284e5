"""End-to-end sync environment: the app, real Redis, a real ``rq worker`` process, the fakes.

The worker is ``rq worker --with-scheduler interactive sync notify`` started as a subprocess with
the app configuration in its environment, exactly as the Procfile runs it; the mailbox side is a
real connector against its wire-level fake (a :class:`MailboxHarness`), the Salesforce side the
real connector against the fake Salesforce, notifications go to an aiosmtpd sink.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from backend.connectors.mailbox import MailboxIdentity
from backend.extensions import services
from backend.jobs.sync import enqueue_sync
from backend.store.mailboxes import SyncMailbox
from backend.sync.activation import activate
from sandbox.harness import MailboxHarness
from sandbox.login import LoggedIn, login
from sandbox.salesforce_rest import SalesforceData, data_of

ROOT = Path(__file__).resolve().parents[1]
RQ = str(Path(sys.executable).with_name("rq"))


def env_value(value: Any) -> str:
    """A setting as an environment variable's text."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass
class Worker:
    """A running ``rq worker`` process (its own process group, so its work horse goes with it)."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """What the worker printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def descendants(self) -> list[int]:
        """Pids of the worker's children and their children (RQ's work horse has its own process group)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
        found: list[int] = []
        frontier = [self.proc.pid]
        while frontier:
            pid = frontier.pop()
            children = [child for child, parent in parents.items() if parent == pid]
            found.extend(children)
            frontier.extend(children)
        return found

    def kill(self) -> None:
        """SIGKILL the worker, its scheduler and its work horse, as a crashed machine would."""
        doomed = self.descendants()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the worker (warm shutdown, then kill)."""
        if self.proc.poll() is not None:
            return
        horses = self.descendants()
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        for pid in horses:  # a horse still running after its worker left
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


WORKER_QUEUES = ("interactive", "sync", "notify")


def start_worker(config: dict[str, Any], log_dir: Path, name: str = "w",
                 queues: tuple[str, ...] = WORKER_QUEUES) -> Worker:
    """Start the Procfile's worker (our Worker class, ``--with-scheduler``) with ``config`` as its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESFORCE_") and k != "REDIS_URL"}
    env.update({k: env_value(v) for k, v in config.items()})
    env["PYTHONPATH"] = str(ROOT)
    log_path = log_dir / f"worker-{name}-{time.monotonic_ns()}.log"
    handle = open(log_path, "wb")
    proc = subprocess.Popen(
        [RQ, "worker", "-w", "backend.jobs.worker.Worker", "--with-scheduler", "--url", config["REDIS_URL"],
         "--name", f"{name}-{os.getpid()}-"
         f"{time.monotonic_ns()}", "--job-monitoring-interval", "1", *queues],
        cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
    )
    handle.close()
    return Worker(proc, log_path)


def start_clock(config: dict[str, Any], log_dir: Path) -> Worker:
    """Start the Procfile's clock (``rq cron backend.jobs.clock``) with ``config`` as its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESFORCE_") and k != "REDIS_URL"}
    env.update({k: env_value(v) for k, v in config.items()})
    env["PYTHONPATH"] = str(ROOT)
    log_path = log_dir / f"clock-{time.monotonic_ns()}.log"
    handle = open(log_path, "wb")
    proc = subprocess.Popen([RQ, "cron", "backend.jobs.clock", "--url", config["REDIS_URL"]], cwd=ROOT, env=env,
                            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    handle.close()
    return Worker(proc, log_path)


def wait_until(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition",
               worker: Worker | None = None) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    detail = f"\n--- worker log ---\n{worker.log()[-6000:]}" if worker else ""
    raise AssertionError(f"timed out waiting for {what}{detail}")


@dataclass
class SyncEnv:
    """One user's sync against one harness, with helpers to drive and observe runs."""

    app: Flask
    client: FlaskClient
    config: dict[str, Any]
    harness: MailboxHarness
    fake_salesforce: Any
    ca_path: str
    log_dir: Path
    session: LoggedIn | None = None
    workers: list[Worker] = field(default_factory=list)

    @property
    def sf(self) -> SalesforceData:
        """The fake org's data."""
        return data_of(self.fake_salesforce.state)

    @property
    def uid(self) -> str:
        """The user's id (also the sync mailbox's id)."""
        assert self.session is not None
        return self.session.uid

    def log_in(self, username: str = "alice@acme.example", password: str = "alice-pw") -> LoggedIn:
        """Log in through the real Salesforce dialog."""
        self.session = login(self.client, self.ca_path, mailbox=self.harness.address, username=username,
                             password=password)
        return self.session

    def activate(self, secrets: dict[str, str] | None = None) -> SyncMailbox:
        """Turn sync on the one way providers do (this enqueues the first run)."""
        with self.app.app_context():
            user = services().store.users.get(self.uid)
            assert user is not None
            identity = MailboxIdentity(primary=self.harness.address, aliases=frozenset(self.harness.aliases))
            mailbox = activate(services().store, user, self.harness.provider, identity, self.harness.connection(),
                               secrets if secrets is not None else self.harness.secrets())
            enqueue_sync(mailbox.id, interactive=True)
            return mailbox

    def worker(self, name: str = "w") -> Worker:
        """Start a worker process."""
        worker = start_worker(self.config, self.log_dir, name)
        self.workers.append(worker)
        return worker

    def runs(self) -> list[dict[str, Any]]:
        """Run records, newest first."""
        with self.app.app_context():
            return services().store.runs.recent(self.uid)

    def mailbox(self) -> SyncMailbox:
        """The sync mailbox."""
        with self.app.app_context():
            mailbox = services().store.mailboxes.get(self.uid)
            assert mailbox is not None
            return mailbox

    def wait_runs(self, count: int, timeout: float = 90.0) -> dict[str, Any]:
        """Wait until ``count`` runs are recorded and no run job is pending; returns the newest record."""
        from backend.jobs.sync import job_status

        def done() -> dict[str, Any] | None:
            runs = self.runs()
            if len(runs) < count:
                return None
            with self.app.app_context():
                if job_status(self.uid) is not None:
                    return None
            return runs[0]

        return wait_until(done, timeout, f"{count} run(s)", self.workers[-1] if self.workers else None)

    def run_now(self) -> bool:
        """Enqueue an interactive run (as Sync now does)."""
        from backend.jobs.sync import enqueue_sync

        with self.app.app_context():
            return enqueue_sync(self.uid, interactive=True)

    def close(self) -> None:
        """Stop workers."""
        for worker in self.workers:
            worker.stop()


def renewed_secrets(harness: MailboxHarness) -> dict[str, str]:
    """Valid credentials after ``revoke_credentials`` (what the person types or consents to on Reconnect)."""
    renew = getattr(harness, "renewed_secrets", None)
    if callable(renew):
        result: dict[str, str] = renew()
        return result
    if harness.provider == "exchange":
        state = harness.state  # type: ignore[attr-defined]
        return {"exchange_password": state.users[harness.address].password}
    if harness.provider == "microsoft":
        from backend.connectors.graph import CACHE_SECRET, MicrosoftAuth

        h: Any = harness
        grant = MicrosoftAuth(h.settings).on_behalf_of(h.ms.naa_token(harness.address), h.user.tid)
        return {CACHE_SECRET: grant.cache}
    raise NotImplementedError(f"no reconnect for {harness.provider}")
