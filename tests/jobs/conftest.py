"""Fixtures for job tests: the end-to-end environment for every mailbox harness, the SMTP sink, and Alice
with an in-memory mailbox (``sf``, ``box``) for jobs run in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from backend import create_app
from backend.extensions import services
from backend.jobs.context import use_app
from sandbox.harness import HARNESSES, HarnessContext
from sandbox.https_client import HttpsClient
from sandbox.smtp import SmtpSink, smtp_sink, smtp_sink_tls  # noqa: F401 - fixtures
from sandbox.tls import CertPair, TestCA
from tests.conftest import RunningFake
from tests.e2e import SyncEnv
from tests.sfhelpers import SalesforceUser, log_in
from tests.sync.items import OWNER, ListMailbox

MAIL_FROM = "sync@sidebar.example"


@contextmanager
def jobs_in_process(env: SyncEnv) -> Iterator[SyncEnv]:
    """``env`` with its queued jobs run in this process (the worker's app is the test's) until the block ends."""
    use_app(env.app)
    try:
        yield env
    finally:
        use_app(None)


def make_env(
    app_config: dict[str, Any], harness_name: str, ca: TestCA, cert: CertPair, fake_salesforce: RunningFake,
    sink: SmtpSink, log_dir: Path, **overrides: Any,
) -> SyncEnv:
    """An environment for one harness (callers close the harness and the env)."""
    harness = HARNESSES[harness_name](HarnessContext(ca, cert))
    config = {
        **app_config,
        **harness.settings_overrides(),
        "SMTP_URL": sink.url,
        "MAIL_FROM": MAIL_FROM,
        "SYNC_RETRY_SECONDS": "1,1,1",
        "LOG_LEVEL": "INFO",
        **overrides,
    }
    app = create_app(config)
    app.test_client_class = HttpsClient
    return SyncEnv(app, app.test_client(), config, harness, fake_salesforce, ca.ca_path, log_dir)


@pytest.fixture(params=list(HARNESSES))
def env_factory(
    request: pytest.FixtureRequest, app_config: dict[str, Any], ca: TestCA, server_cert: CertPair,
    fake_salesforce: RunningFake, smtp_sink: SmtpSink, redis_client: redis.Redis,  # noqa: F811
    tmp_path: Path,
) -> Iterator[Callable[..., SyncEnv]]:
    """Build sync environments for one harness kind (each call: a new harness, e.g. a colleague's mailbox)."""
    made: list[SyncEnv] = []

    def build(**overrides: Any) -> SyncEnv:
        env = make_env(app_config, request.param, ca, server_cert, fake_salesforce, smtp_sink, tmp_path, **overrides)
        made.append(env)
        return env

    try:
        yield build
    finally:
        for env in made:
            env.close()
            env.harness.close()


@pytest.fixture
def box() -> ListMailbox:
    """The in-memory mailbox."""
    return ListMailbox()


@pytest.fixture
def sf(app: Flask, client: FlaskClient, ca: Any, fake_salesforce: Any, box: ListMailbox) -> Iterator[SalesforceUser]:
    """Alice with a running mailbox; the app is the process's worker app."""
    user = log_in(app, client, ca.ca_path, fake_salesforce)
    use_app(app)
    try:
        with app.app_context():
            svc = services()
            svc.clients.mailbox_factory = lambda provider, ctx: box
            svc.store.mailboxes.activate(user.uid, "list", OWNER, [], {})
            yield user
    finally:
        use_app(None)
