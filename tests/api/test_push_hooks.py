"""``/hooks/graph`` and ``/hooks/graph/lifecycle`` over HTTP: the handshake, checked notifications,
the debounce, and refusals that have no effect and are never a 5xx."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq.registry import ScheduledJobRegistry

from backend import create_app
from backend.extensions import QUEUE_SYNC, services
from backend.jobs.sync import job_id_for
from backend.store.push import Subscription
from sandbox.https_client import HttpsClient

MID = "mbx-push-1"
SUB = "3f1e6a52-0000-4000-8000-000000000001"
STATE = "the-right-client-state"


@pytest.fixture
def known(app: Flask) -> Subscription:
    """A subscription of a running mailbox, as ``ensure_push`` saves it."""
    with app.app_context():
        store = services().store
        store.mailboxes.ensure(MID, "00D000000000001EAA")
        sub = Subscription(SUB, MID, "inbox", "me/mailFolders('Inbox')/messages", time.time() + 3600,
                           store.push.hash_state(STATE), time.time())
        store.push.save(sub)
        return sub


def notification(sub_id: str = SUB, state: str = STATE, **extra: Any) -> dict[str, Any]:
    """A change notification body as Graph sends it."""
    return {"value": [{"subscriptionId": sub_id, "clientState": state, "changeType": "created",
                       "resource": "Users/x/Messages/AAMk1", "resourceData": {"id": "AAMk1"}, **extra}]}


def planned(app: Flask) -> tuple[bool, int]:
    """(a run is planned for MID, how many runs are scheduled or queued for it)."""
    with app.app_context():
        svc = services()
        key = svc.store.keys("push", "planned", MID)
        scheduled = ScheduledJobRegistry(QUEUE_SYNC, connection=svc.redis_raw).get_job_ids()
        queued = svc.queue(QUEUE_SYNC).job_ids
        runs = [j for j in [*scheduled, *queued] if j == job_id_for(MID)]
        return bool(svc.store.redis.exists(key)), len(runs)


@pytest.mark.parametrize("path", ["/hooks/graph", "/hooks/graph/lifecycle"])
def test_the_validation_handshake_echoes_the_token_as_text(client: FlaskClient, path: str) -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 1"
    resp = client.post(path, query_string={"validationToken": token}, data=b"", content_type="text/plain")
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain" and resp.get_data(as_text=True) == token


def test_the_handshake_touches_neither_redis_nor_graph(app_config: dict[str, Any]) -> None:
    # No Redis listens here: any Redis call on that path would fail the request.
    app = create_app({**app_config, "REDIS_URL": "redis://127.0.0.1:9/0"})
    app.test_client_class = HttpsClient
    resp = app.test_client().post("/hooks/graph", query_string={"validationToken": "abc"})
    assert (resp.status_code, resp.get_data(as_text=True)) == (200, "abc")


def test_a_notification_plans_one_debounced_run(app: Flask, client: FlaskClient, known: Subscription) -> None:
    assert planned(app) == (False, 0)
    started = time.perf_counter()
    resp = client.post("/hooks/graph", json=notification())
    assert resp.status_code == 202 and time.perf_counter() - started < 3
    assert planned(app) == (True, 1)
    # A burst: one run is planned already, it reads these changes too.
    for _ in range(20):
        assert client.post("/hooks/graph", json=notification()).status_code == 202
    assert planned(app) == (True, 1)


def test_at_most_one_notification_run_a_minute(app: Flask, known: Subscription) -> None:
    with app.app_context():
        push = services().store.push
        now = time.time()
        first = push.plan_run(MID, now, 10, 60)
        assert first == pytest.approx(now + 10)
        assert push.plan_run(MID, now + 1, 10, 60) is None
        push.run_started(MID)  # that run began: the next notification plans another, a minute later
        second = push.plan_run(MID, now + 12, 10, 60)
        assert second is not None and second >= first + 60


@pytest.mark.parametrize("body", [
    notification(state="a-wrong-client-state"),
    notification(sub_id="4e9f0000-0000-4000-8000-00000000dead"),
    notification(state=""),
    {"value": [{"subscriptionId": SUB}]},
    {"value": ["not an object", 7, None]},
])
def test_unknown_subscriptions_and_wrong_client_state_are_accepted_and_ignored(
        app: Flask, client: FlaskClient, known: Subscription, body: dict[str, Any]) -> None:
    for path in ("/hooks/graph", "/hooks/graph/lifecycle"):
        entry = body["value"][0]
        if isinstance(entry, dict) and path.endswith("lifecycle"):
            entry = {**entry, "lifecycleEvent": "subscriptionRemoved"}
            body = {"value": [entry]}
        assert client.post(path, json=body).status_code == 202
    assert planned(app) == (False, 0)
    with app.app_context():
        assert services().queue(QUEUE_SYNC).job_ids == []  # no renewal or recreation either


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"data": b"{" * 10, "content_type": "application/json"}, 400),
    ({"data": b"not json", "content_type": "text/plain"}, 415),
    ({"data": json.dumps([1, 2]), "content_type": "application/json"}, 400),
    ({"data": json.dumps({"value": "x"}), "content_type": "application/json"}, 400),
    ({"data": json.dumps(notification() | {"pad": "x" * 300_000}), "content_type": "application/json"}, 413),
])
def test_malformed_bodies_are_refused_without_effect(app: Flask, client: FlaskClient, known: Subscription,
                                                      kwargs: dict[str, Any], status: int) -> None:
    for path in ("/hooks/graph", "/hooks/graph/lifecycle"):
        assert client.post(path, **kwargs).status_code == status
    assert planned(app) == (False, 0)


def test_a_get_is_refused(client: FlaskClient, app: Flask, known: Subscription) -> None:
    for path in ("/hooks/graph", "/hooks/graph/lifecycle"):
        # Only POST is routed here (a GET falls through to the static files: 404).
        resp = client.get(path, query_string={"validationToken": "abc"})
        assert resp.status_code in (404, 405) and b"abc" not in resp.data
    assert planned(app) == (False, 0)


def test_the_client_state_is_kept_only_as_a_hash(app: Flask, known: Subscription) -> None:
    with app.app_context():
        store = services().store
        dump = " ".join(str(store.redis.hgetall(k)) for k in store.redis.keys(store.keys.pattern("push", "*"))
                        if store.redis.type(k) == "hash")
    assert STATE not in dump and known.state_hash in dump


SUB2 = "3f1e6a52-0000-4000-8000-000000000002"


@pytest.fixture
def two(app: Flask, known: Subscription) -> Subscription:
    """A second subscription of the same mailbox (Graph batches lifecycle entries of both)."""
    with app.app_context():
        store = services().store
        sub = Subscription(SUB2, MID, "sentitems", "me/mailFolders('SentItems')/messages", time.time() + 3600,
                           store.push.hash_state(STATE), time.time())
        store.push.save(sub)
        return sub


def lifecycle(event: str, *subs: str) -> dict[str, Any]:
    """A lifecycle notification body with one entry per subscription."""
    return {"value": [{"subscriptionId": s, "clientState": STATE, "lifecycleEvent": event} for s in subs]}


def queued_jobs(app: Flask) -> dict[str, tuple[Any, ...]]:
    """The sync queue's jobs of MID: job id -> its args."""
    with app.app_context():
        svc = services()
        return {j.id: tuple(j.args) for j in svc.queue(QUEUE_SYNC).get_jobs()}


def test_batched_removals_are_all_recreated_by_one_job(app: Flask, client: FlaskClient, two: Subscription) -> None:
    assert client.post("/hooks/graph/lifecycle", json=lifecycle("subscriptionRemoved", SUB, SUB2)).status_code == 202
    with app.app_context():
        # Both forgotten at once: whichever ensure job runs next makes both kinds again.
        assert services().store.push.of(MID) == []
    assert queued_jobs(app) == {f"push-ensure-{MID}": (MID,)}


def test_batched_reauthorizations_renew_every_subscription_named(app: Flask, client: FlaskClient,
                                                                 two: Subscription) -> None:
    body = lifecycle("reauthorizationRequired", SUB, SUB2)
    assert client.post("/hooks/graph/lifecycle", json=body).status_code == 202
    assert queued_jobs(app) == {f"push-renew-{MID}": (MID, (SUB, SUB2))}


def test_missed_notifications_plan_a_delta_run_and_keep_the_subscription(app: Flask, client: FlaskClient,
                                                                        known: Subscription) -> None:
    assert client.post("/hooks/graph/lifecycle", json=lifecycle("missed", SUB)).status_code == 202
    with app.app_context():
        assert [s.id for s in services().store.push.of(MID)] == [SUB]
    assert list(queued_jobs(app)) == [job_id_for(MID)]


GMAIL_MID = "mbx-gmail-1"
GMAIL_ADDRESS = "alice@customer.example"


def gmail_watch(app: Flask, state_hash: str | None = None, legacy: bool = False) -> str:
    """A Gmail watch in the index, as ``_watch_gmail`` saves it (``legacy``: an entry written before ``provider``)."""
    from backend.sync.push import GMAIL_KIND, gmail_sub_id

    with app.app_context():
        store = services().store
        store.mailboxes.ensure(GMAIL_MID, "00D000000000001EAA")
        sub = Subscription(gmail_sub_id(GMAIL_ADDRESS), GMAIL_MID, GMAIL_KIND, "users/me INBOX,SENT -> t",
                           time.time() + 7 * 86400, state_hash or store.push.hash_state("x"), time.time(), 86400)
        store.push.save(sub)
        if legacy:
            store.redis.hdel(store.keys("push", "sub", sub.id), "provider")
        return sub.id


# Found in review: the Gmail watch's index entry held the hash of the public constant "gmail-watch",
# and the Graph hooks never asked whose an entry was, so anyone knowing an address could plan runs
# for it, force undebounced ones ("missed") or delete its watch ("subscriptionRemoved").
@pytest.mark.parametrize("legacy", [False, True])
def test_graph_notifications_naming_a_gmail_watch_are_refused(app: Flask, client: FlaskClient,
                                                              legacy: bool) -> None:
    with app.app_context():
        old_state = services().store.push.hash_state("gmail-watch")  # what was kept before the fix
    sub_id = gmail_watch(app, old_state, legacy)
    change = {"value": [{"subscriptionId": sub_id, "clientState": "gmail-watch", "changeType": "created"}]}
    assert client.post("/hooks/graph", json=change).status_code == 202
    for event in ("missed", "subscriptionRemoved", "reauthorizationRequired"):
        body = {"value": [{"subscriptionId": sub_id, "clientState": "gmail-watch", "lifecycleEvent": event}]}
        assert client.post("/hooks/graph/lifecycle", json=body).status_code == 202
    with app.app_context():
        svc = services()
        assert svc.store.push.lookup(sub_id) is not None  # the watch is kept
        scheduled = ScheduledJobRegistry(QUEUE_SYNC, connection=svc.redis_raw).get_job_ids()
        assert [*scheduled, *svc.queue(QUEUE_SYNC).job_ids] == []  # no run, no renewal, no recreation


def test_a_gmail_watch_keeps_no_known_client_state(app_config: dict[str, Any], redis_client: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.jobs.push import manager

    class Watch:
        """``users.watch`` answering as Gmail does."""

        def watch(self, topic: str) -> tuple[str, float]:
            return "1", time.time() + 7 * 86400

        def close(self) -> None:
            pass

    monkeypatch.setattr("backend.connectors.google.push.open_watch", lambda context: Watch())
    app = create_app({**app_config, "GOOGLE_PUBSUB_TOPIC": "projects/p/topics/t",
                      "GOOGLE_PUBSUB_PUSH_ACCOUNT": "push@p.iam.gserviceaccount.com"})
    with app.app_context():
        store = services().store
        store.mailboxes.ensure(GMAIL_MID, "00D000000000001EAA")
        store.mailboxes.activate(GMAIL_MID, "google", GMAIL_ADDRESS)
        assert manager().ensure(GMAIL_MID) == 1
        (watch,) = store.push.of(GMAIL_MID)
        # Random: no constant a sender could know is what the index keeps for a watch.
        assert watch.state_hash not in {store.push.hash_state("gmail-watch"), store.push.hash_state("")}
        found = store.push.lookup(watch.id)
        assert found is not None and found.provider == "gmail"
