"""Secret scans: after full runs of every provider and of mass activation, no secret in Redis or the logs.

Searched for: the Exchange passwords used (a wrong one too), every refresh and access token the fakes
issued (asked of the fakes, which keep them), the Salesforce JWT private key, the Fernet keys, the
signing key, the OAuth apps' client secrets, the pane's bearer token, and a Google service account's
private key of the org's Google Workspace access (and one Google refused).
Searched in: every Redis key and value (RQ's packed job data, results and tracebacks unpacked), the
worker's log and this process's, in ``LOG_FORMAT`` ``text`` and ``json``. The scan itself is proven
first on planted secrets.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from flask import Flask

from backend.extensions import QUEUE_SYNC, services
from backend.jobs.sync import sync_mailbox
from sandbox.harness import HARNESSES
from sandbox.harness.exchange import ExchangeHarness
from sandbox.salesforce_jwt import jwt_key_pair
from sandbox.smtp import SmtpSink
from sandbox.tls import CertPair, TestCA
from tests.conftest import GoogleFake, RunningFake
from tests.e2e import SyncEnv
from tests.exchange_mass_env import SERVICE_PASSWORD, activate_exchange, seed_exchange, set_up_service_account
from tests.google_mass_env import activate_google, seed_workspace, set_up_key
from tests.helpers import run_queued
from tests.jobs.conftest import make_env
from tests.mass_env import JWT_KEYS, MassEnv, address
from tests.security.conftest import AppLogs
from tests.security.scan import Secret, assert_no_secret, needles, redis_texts, scan

CUSTOMER = "carol@customer.example"
WRONG_PASSWORD = "Wr0ng-Exchange-Passw0rd!"  # typed once before the right one: refused, never kept


# --- the scan itself ---------------------------------------------------------------------------


PLANTED = Secret("planted token", "1//planted-refresh-TOKEN+/with=odd&chars")


def _plantings(value: str) -> dict[str, bytes]:
    """The planted secret as product code could carelessly store it."""
    return {
        "clear": f"prefix {value} suffix".encode(),
        "url-encoded": f"https://x.example/cb?token={quote(value, safe='')}&x=1".encode(),
        "json-escaped": json.dumps({"t": value + '"quoted"'}).encode(),
        "base64, aligned": base64.b64encode(value.encode()),
        "base64, inside a longer value": base64.b64encode(b"k=" + value.encode() + b";more"),
        "urlsafe base64, shifted": base64.urlsafe_b64encode(b"x" + value.encode()),
        "zlib-compressed": zlib.compress(f"args ({value!r},)".encode()),
        "compressed then base64": base64.b64encode(zlib.compress(value.encode())),
    }


@pytest.mark.parametrize("how", sorted(_plantings(PLANTED.value)))
@pytest.mark.parametrize("kind", ["string", "hash", "list", "set", "zset", "stream"])
def test_the_scan_finds_a_planted_secret(redis_client: redis.Redis, how: str, kind: str) -> None:
    stored = _plantings(PLANTED.value)[how]
    raw = redis.Redis.from_url(_url(redis_client))
    writers = {"string": lambda: raw.set("k", stored), "hash": lambda: raw.hset("k", "data", stored),
               "list": lambda: raw.rpush("k", b"other", stored), "set": lambda: raw.sadd("k", stored),
               "zset": lambda: raw.zadd("k", {stored: 1.0}), "stream": lambda: raw.xadd("k", {"v": stored})}
    writers[kind]()
    findings = scan(redis_texts(redis_client), [PLANTED])
    assert findings and {f.where for f in findings} == {"k"}, (how, kind)


def test_the_scan_reads_rq_job_arguments_and_results(app: Flask, redis_client: redis.Redis) -> None:
    secret = Secret("job argument", "s3cr3t-argument-value-42")
    with app.app_context():
        job = services().queue(QUEUE_SYNC).enqueue(_echo, args=(secret.value,), job_id="planted", result_ttl=600)
        packed = services().redis_raw.hget(job.key, "data") or b""
        # RQ compresses the pickled arguments: a plain search of the hash would miss it.
        assert secret.value.encode() not in packed
        assert {f.where for f in scan(redis_texts(redis_client), [secret])} == {job.key}
        run_queued(QUEUE_SYNC)
        services().redis_raw.delete(job.key)  # its data and description hold the argument: only the result is left
    assert {f.where for f in scan(redis_texts(redis_client), [secret])} == {f"rq:results:{job.id}"}


def _echo(value: str) -> str:
    """A job whose result is its argument reversed twice (the same text, stored in RQ's result stream)."""
    return value[::-1][::-1]


def _url(client: redis.Redis) -> str:
    """The client's database as a URL."""
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"


def test_a_hash_is_not_a_leak_and_pem_keys_are_found_by_their_lines() -> None:
    import hashlib

    digest = hashlib.sha256(PLANTED.value.encode()).hexdigest()
    assert not scan({"log": f"token_hash={digest}"}, [PLANTED])
    key = Secret("jwt key", JWT_KEYS[0])
    body_line = JWT_KEYS[0].splitlines()[5]
    assert scan({"log": json.dumps({"message": "key " + body_line})}, [key])
    assert scan({"log": "-----BEGIN PRIVATE KEY-----"}, [PLANTED])  # any private key at all
    assert len(needles(key)) > 20


@pytest.mark.parametrize("value", ["", "short"])
def test_too_short_a_secret_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="too short"):
        needles(Secret("s", value))


# --- what the fakes issued -------------------------------------------------------------------------


def issued(env: SyncEnv) -> set[Secret]:
    """Every token the fakes hold now (refresh and access), and the harness's password."""
    found = {Secret("salesforce refresh token", t) for t in env.fake_salesforce.state.refresh_tokens}
    found |= {Secret("salesforce access token", t) for t in env.fake_salesforce.state.access_tokens}
    harness: Any = env.harness
    if env.harness.provider == "exchange":
        found |= {Secret(f"exchange password of {u}", user.password) for u, user in harness.state.users.items()}
    elif env.harness.provider == "microsoft":
        found |= {Secret("microsoft refresh token", t) for t in harness.ms.refresh_tokens}
        found |= {Secret("microsoft access token", t) for t in harness.ms.access_tokens}
        found.add(Secret("microsoft client secret", harness.ms.client_secret))
    else:
        found |= {Secret("google refresh token", t) for t in harness.google.refresh_tokens}
        found |= {Secret("google access token", t) for t in harness.google.access_tokens}
        found.add(Secret("google client secret", harness.google.client_secret))
    return found


def server_secrets(config: dict[str, Any]) -> set[Secret]:
    """The deployment's own secrets: Fernet keys, the signing key, the Salesforce app's secret, the JWT key."""
    found = {Secret(f"fernet key {i}", key) for i, key in enumerate(str(config["ENCRYPTION_KEYS"]).split(","))}
    found.add(Secret("SECRET_KEY", config["SECRET_KEY"]))
    found.add(Secret("salesforce client secret", config["SALESFORCE_CLIENT_SECRET"]))
    if config.get("SALESFORCE_JWT_PRIVATE_KEY"):
        found.add(Secret("SALESFORCE_JWT_PRIVATE_KEY", config["SALESFORCE_JWT_PRIVATE_KEY"]))
    return found


# --- full runs of every provider -----------------------------------------------------------------------


@pytest.fixture(params=list(HARNESSES))
def provider(request: pytest.FixtureRequest) -> str:
    """Each mailbox provider."""
    return str(request.param)


@pytest.fixture(params=["text", "json"])
def log_format(request: pytest.FixtureRequest) -> str:
    """Each ``LOG_FORMAT``."""
    return str(request.param)


@pytest.fixture
def env(provider: str, log_format: str, app_config: dict[str, Any], ca: TestCA, server_cert: CertPair,
        fake_salesforce: RunningFake, smtp_sink: SmtpSink, redis_client: redis.Redis,
        tmp_path: Path) -> Iterator[SyncEnv]:
    """One person's sync against ``provider``, the worker logging in ``log_format``."""
    built = make_env(app_config, provider, ca, server_cert, fake_salesforce, smtp_sink, tmp_path,
                     LOG_FORMAT=log_format)
    try:
        yield built
    finally:
        built.close()
        built.harness.close()


def _mail(env: SyncEnv, count: int, start: int = 0) -> None:
    when = datetime.now(tz=UTC) - timedelta(hours=1)
    for i in range(start, start + count):
        env.harness.add_email("inbox", subject=f"scan subject {i}", sender=CUSTOMER, to=[env.harness.address],
                              body=f"scan body {i}", message_id=f"<scan-{i}@customer.example>",
                              when=when + timedelta(seconds=i))


def _connect(env: SyncEnv) -> None:
    """Turn sync on: Exchange through the pane's Connect (a wrong password first), the others as consent leaves it."""
    if env.harness.provider != "exchange":
        env.activate()
        return
    assert env.session is not None
    harness: Any = env.harness
    headers, body = env.session.headers, {"login": harness.address, "ews_url": harness.ews_url}
    wrong = env.client.post("/api/sync/exchange", headers=headers, json={**body, "password": WRONG_PASSWORD})
    refusal = (wrong.status_code, (wrong.json or {})["error"]["code"])
    assert refusal == (422, "auth_failed"), wrong.get_data(as_text=True)
    right = env.client.post("/api/sync/exchange", headers=headers, json={**body, "password": harness.password})
    assert right.status_code == 200, right.get_data(as_text=True)


@pytest.mark.slow
def test_full_runs_leave_no_secret_in_redis_or_the_logs(env: SyncEnv, redis_client: redis.Redis, log_format: str,
                                                        app_logs: AppLogs) -> None:
    env.sf.add_contact(CUSTOMER, "Carol")
    env.log_in()
    _mail(env, 5)
    _connect(env)
    worker = env.worker()
    assert env.wait_runs(1)["status"] == "ok"
    secrets = issued(env)  # the first tokens, before they expire and the fakes forget them
    # Every access token expires: the next run refreshes both sides and gets new ones.
    env.fake_salesforce.state.expire_access_tokens()
    harness: Any = env.harness
    if env.harness.provider == "microsoft":
        harness.ms.expire_access_tokens()
    elif env.harness.provider == "google":
        harness.google.expire_access_tokens()
    _mail(env, 3, start=5)
    env.run_now()
    second = env.wait_runs(2)
    assert second["status"] == "ok" and second["counts"]["written"] == 3, second
    assert len(env.sf.all("EmailMessage")) == 8
    secrets |= issued(env)
    # The credentials refused at the provider: the failing run's error, its log lines and the job's
    # traceback in RQ's results must not quote them either.
    env.harness.revoke_credentials()
    env.run_now()
    third = env.wait_runs(3)
    assert third["status"] != "ok", third
    secrets |= issued(env) | server_secrets(env.config)
    secrets.add(Secret("pane bearer token", env.session.token if env.session else ""))
    if env.harness.provider == "exchange":
        secrets.add(Secret("the wrong exchange password", WRONG_PASSWORD))
    log = worker.log()
    lines = [line for line in log.splitlines() if line.startswith("{")]
    # The worker really logged in the format under test (and said something about the runs).
    assert bool(lines) is (log_format == "json") and ("sync" in log), log[-2000:]
    texts = {**redis_texts(redis_client), "worker log": log, **app_logs.texts()}
    assert assert_no_secret(texts, secrets) >= 6


# --- mass activation ------------------------------------------------------------------------------


def _mass_secrets(mass: MassEnv, config: dict[str, Any]) -> set[Secret]:
    state = mass.sf.state
    found = {Secret("salesforce access token", t) for t in state.access_tokens}
    found |= {Secret("salesforce refresh token", t) for t in state.refresh_tokens}
    found |= {Secret("microsoft access token", t) for t in mass.graph.ms.access_tokens}
    found |= {Secret("microsoft refresh token", t) for t in mass.graph.ms.refresh_tokens}
    found.add(Secret("microsoft client secret", mass.graph.ms.client_secret))
    return found | server_secrets(config)


@pytest.mark.slow
def test_mass_activation_and_its_runs_leave_no_secret(mass: MassEnv, mass_config: dict[str, Any],
                                                      redis_client: redis.Redis, app_logs: AppLogs) -> None:
    mass.sf.state.rest.add_contact(CUSTOMER)
    results = {row["address"]: row["result"] for row in mass.activate(["bob", "jill", "carol", "hank"])["results"]}
    assert results[address("bob")] == results[address("jill")] == "activated", results
    for name in ("bob", "jill"):
        mass.graph.graph.add_message(address(name), subject="Quote", sender=CUSTOMER, to=[address(name)])
        assert sync_mailbox(mass.uid(name))["counts"]["written"] == 1
    texts = {**redis_texts(redis_client), **app_logs.texts()}
    assert assert_no_secret(texts, _mass_secrets(mass, mass_config)) >= 6


@pytest.mark.slow
def test_google_mass_activation_and_its_runs_leave_no_secret(
        mass: MassEnv, mass_config: dict[str, Any], fake_google: GoogleFake, redis_client: redis.Redis,
        app_logs: AppLogs) -> None:
    mass.sf.state.rest.add_contact(CUSTOMER)
    key = seed_workspace(fake_google)
    wrong = {**key, "private_key": jwt_key_pair("a key Google does not know")[0]}
    assert set_up_key(mass, wrong).status_code >= 400  # refused: and its private key kept nowhere either
    assert set_up_key(mass, key).status_code == 200
    results = {row["address"]: row["result"] for row in activate_google(mass, ["bob", "jill", "carol"])["results"]}
    assert results[address("bob")] == results[address("jill")] == "activated", results
    for name in ("bob", "jill"):
        fake_google.gmail.add_message(address(name), ["INBOX"], subject="Quote", sender=CUSTOMER, to=[address(name)])
        assert sync_mailbox(mass.uid(name))["counts"]["written"] == 1
    fake_google.google.expire_access_tokens()  # the next runs sign new assertions
    for name in ("bob", "jill"):
        assert sync_mailbox(mass.uid(name))["status"] == "ok"
    secrets = _mass_secrets(mass, mass_config)
    secrets |= {Secret("google service account private key", key["private_key"]),
                Secret("a refused service account private key", wrong["private_key"])}
    secrets |= {Secret("google delegated access token", t) for t in fake_google.google.access_tokens}
    texts = {**redis_texts(redis_client), **app_logs.texts()}
    assert assert_no_secret(texts, secrets) >= 8


@pytest.mark.slow
def test_exchange_mass_activation_and_its_runs_leave_no_secret(
        mass: MassEnv, mass_config: dict[str, Any], ews: ExchangeHarness, redis_client: redis.Redis,
        app_logs: AppLogs) -> None:
    mass.sf.state.rest.add_contact(CUSTOMER)
    seed_exchange(ews)
    refused = set_up_service_account(mass, ews, password=WRONG_PASSWORD)
    assert refused.status_code >= 400, refused.get_data(as_text=True)
    assert set_up_service_account(mass, ews).status_code == 200
    results = {row["address"]: row["result"] for row in activate_exchange(mass, ["bob", "jill", "gina"])["results"]}
    assert results[address("bob")] == "activated", results
    ews.state.add_email(address("jill"), "inbox", subject="Quote", sender=CUSTOMER, to=[address("jill")])
    for name in ("bob", "jill"):
        assert sync_mailbox(mass.uid(name))["status"] == "ok"
    secrets = _mass_secrets(mass, mass_config)
    secrets |= {Secret("exchange service account password", SERVICE_PASSWORD),
                Secret("the wrong service account password", WRONG_PASSWORD)}
    texts = {**redis_texts(redis_client), **app_logs.texts()}
    assert assert_no_secret(texts, secrets) >= 7
