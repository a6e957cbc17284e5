"""``flask keys rotate`` while real workers run syncs: nothing lost, nothing unreadable once the old key is gone.

The deployment's sequence: secrets were written under the old key, and the meetings the people
organised logged by workers that know only it (their keys sealed in the meeting maps); the key list
``new,old`` is deployed to the workers and the CLI; ``flask keys rotate`` runs (here again and again) while the
workers sync several mailboxes, whose runs refresh and rewrite secrets meanwhile (every Salesforce
access token expired first); then the old key is dropped. Afterwards every Fernet token anywhere in
Redis decrypts with the new key alone, and a further round of runs, by workers that know only the
new key, logs the new mail: every item in Salesforce exactly once, and the meetings, now gone from
the calendars, are still found in Salesforce and marked cancelled.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from flask import Flask
from rq.registry import StartedJobRegistry

from backend import create_app
from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services
from backend.jobs.sync import enqueue_sync, job_status
from backend.security.crypto import SecretBox
from sandbox.harness.exchange import ExchangeHarness
from sandbox.https_client import HttpsClient
from sandbox.login import LoggedIn, login
from sandbox.salesforce_rest import data_of
from sandbox.smtp import SmtpSink
from tests.conftest import RunningFake
from tests.e2e import Worker, start_worker, wait_until
from tests.security.scan import redis_texts

pytestmark = pytest.mark.slow

PEOPLE = ("alice", "bob", "carl", "dana")
CUSTOMER = "carol@customer.example"
FERNET = re.compile(r"gAAAAA[A-Za-z0-9_\-]{40,}={0,2}")


def address(name: str) -> str:
    """A person's address."""
    return f"{name}@acme.example"


@pytest.fixture
def config(app_config: dict[str, Any], ews: ExchangeHarness, smtp_sink: SmtpSink) -> dict[str, Any]:
    """The fake Exchange server reached, workers' settings (retries fast, logs at INFO)."""
    return {**app_config, **ews.settings_overrides(), "SMTP_URL": smtp_sink.url, "MAIL_FROM": "sync@sidebar.example",
            "SYNC_RETRY_SECONDS": "1,1,1", "LOG_LEVEL": "INFO"}


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Workers started by the test, stopped at its end."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def _app(config: dict[str, Any], keys: str) -> Flask:
    app = create_app({**config, "ENCRYPTION_KEYS": keys})
    app.test_client_class = HttpsClient
    return app


def _mail(ews: ExchangeHarness, name: str, start: int, count: int) -> None:
    when = datetime.now(tz=UTC) - timedelta(hours=1)
    for i in range(start, start + count):
        ews.state.add_email(address(name), "inbox", subject=f"rotation {i}", sender=CUSTOMER, to=[address(name)],
                            message_id=f"<rot-{name}-{i}@customer.example>", when=when + timedelta(seconds=i))


def _meeting(ews: ExchangeHarness, name: str) -> str:
    """A meeting tomorrow the person organised with the customer: its key goes into the meeting map, sealed."""
    start = datetime.now(tz=UTC).replace(microsecond=0) + timedelta(days=1)
    return ews.state.add_event(address(name), subject=f"Rotation demo {name}", start=start,
                               end=start + timedelta(hours=1), organizer=address(name), attendees=[CUSTOMER])


def _connect_everyone(app: Flask, ews: ExchangeHarness, fake_salesforce: RunningFake, ca_path: str) -> dict[str, str]:
    """Each person logs in and connects their Exchange mailbox through the pane (secrets under the old key)."""
    uids = {}
    for name in PEOPLE:
        if name != "alice":
            fake_salesforce.state.add_user(address(name), f"{name}-pw", email=address(name), name=name.title())
            ews.state.add_user(address(name), f"{name}-Exchange-pw", account=name)
        password = f"{name}-Exchange-pw" if name != "alice" else ews.password
        client = app.test_client()
        who: LoggedIn = login(client, ca_path, mailbox=address(name), username=address(name),
                              password=f"{name}-pw" if name != "alice" else "alice-pw")
        answer = client.post("/api/sync/exchange", headers=who.headers,
                             json={"login": address(name), "password": password, "ews_url": ews.ews_url})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        uids[name] = who.uid
    return uids


def _runs(app: Flask, uids: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    with app.app_context():
        return {name: services().store.runs.recent(uid) for name, uid in uids.items()}


def _all_done(app: Flask, uids: dict[str, str], count: int) -> bool:
    runs = _runs(app, uids)
    with app.app_context():
        return all(len(r) >= count for r in runs.values()) and all(job_status(u) is None for u in uids.values())


def test_rotation_while_workers_sync(config: dict[str, Any], ews: ExchangeHarness, fake_salesforce: RunningFake,
                                     ca: Any, redis_client: redis.Redis, workers: list[Worker],
                                     tmp_path: Path) -> None:
    old, new = config["ENCRYPTION_KEYS"], Fernet.generate_key().decode()
    data_of(fake_salesforce.state).add_contact(CUSTOMER, "Carol")
    before = _app(config, old)
    uids = _connect_everyone(before, ews, fake_salesforce, ca.ca_path)
    # Workers that know only the old key log each organiser's meeting: its key sealed in the meeting map.
    meetings = {name: _meeting(ews, name) for name in PEOPLE}
    workers.append(start_worker({**config, "ENCRYPTION_KEYS": old}, tmp_path, "old"))
    wait_until(lambda: _all_done(before, uids, 1), 90, "runs with the old key", workers[-1])
    workers.pop().stop()
    assert all(r[0]["counts"]["events_written"] == 1 for r in _runs(before, uids).values())
    with before.app_context():
        secret_keys = sorted(redis_client.scan_iter(match=services().store.keys("secret", "*")))
    assert len(secret_keys) >= 3 * len(PEOPLE)  # Salesforce refresh and access tokens, Exchange password
    for name in PEOPLE:
        _mail(ews, name, 0, 25)
    fake_salesforce.state.expire_access_tokens()  # every run refreshes and rewrites its access token
    with before.app_context():
        for uid in uids.values():
            enqueue_sync(uid, interactive=True)

    # The key list new,old deployed to the workers and the CLI; rotate while the runs go.
    both = _app(config, f"{new},{old}")
    cli = both.test_cli_runner()
    workers.extend(start_worker({**config, "ENCRYPTION_KEYS": f"{new},{old}"}, tmp_path, f"rot{i}") for i in (1, 2))
    rotations = during_runs = 0
    deadline = time.monotonic() + 120
    while not _all_done(both, uids, 2):
        assert time.monotonic() < deadline, workers[0].log()[-4000:]
        with both.app_context():
            busy = sum(StartedJobRegistry(q, connection=services().redis_raw).count
                       for q in (QUEUE_INTERACTIVE, QUEUE_SYNC))
        result = cli.invoke(args=["keys", "rotate"])
        assert result.exit_code == 0, result.output
        rotations += 1
        during_runs += busy > 0
        time.sleep(0.05)
    assert during_runs >= 1, "no rotation happened while a run was in progress"
    assert cli.invoke(args=["keys", "rotate"]).exit_code == 0  # what the runs wrote last, under the new key
    first = _runs(both, uids)
    assert all(r[0]["status"] == "ok" and r[0]["counts"]["emails_written"] == 25 for r in first.values()), first
    assert fake_salesforce.state.token_requests.count("refresh_token") >= len(PEOPLE)

    # The old key dropped: every Fernet token anywhere in Redis decrypts with the new key alone.
    for worker in workers:
        worker.stop()
    tokens = {t for text in redis_texts(redis_client).values() for t in FERNET.findall(text)}
    assert len(tokens) >= len(secret_keys)
    new_only = SecretBox([new])
    for token in tokens:
        new_only.decrypt(token)
    after = _app(config, new)
    with after.app_context():
        for name, uid in uids.items():
            assert services().store.secrets.get("mailbox", uid, "exchange_password"), name

    # Workers that know only the new key: the next runs read every secret and log the new mail once,
    # and each organiser's meeting, gone from the calendar, is found in Salesforce by its rotated key.
    for name in PEOPLE:
        _mail(ews, name, 25, 5)
        ews.state.delete_item(meetings[name])
    fake_salesforce.state.expire_access_tokens()
    workers.append(start_worker({**config, "ENCRYPTION_KEYS": new}, tmp_path, "new"))
    with after.app_context():
        for uid in uids.values():
            enqueue_sync(uid, interactive=True)
    wait_until(lambda: _all_done(after, uids, 3), 90, "runs with the new key alone", workers[-1])
    second = _runs(after, uids)
    assert all(r[0]["status"] == "ok" and r[0]["counts"]["emails_written"] == 5 for r in second.values()), second
    assert all(r[0]["counts"]["events_cancelled"] == 1 for r in second.values()), second
    subjects = sorted(e["Subject"] for e in data_of(fake_salesforce.state).all("Event"))
    assert subjects == sorted(f"Canceled: Rotation demo {name}" for name in PEOPLE), subjects
    logged = Counter(m["MessageIdentifier"] for m in data_of(fake_salesforce.state).all("EmailMessage"))
    assert len(logged) == 30 * len(PEOPLE) and set(logged.values()) == {1}, logged.most_common(3)
