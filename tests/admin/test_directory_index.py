"""The console's per-org index stays true after every kind of write, and a page's round trips stay constant."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from backend.admin import directory
from backend.extensions import services
from backend.store import Store
from sandbox.redis_trips import RoundTrips
from tests.admin.helpers import ORG, OTHER_ORG, run_record, seed_user


def _ids(store: Store, **query: Any) -> list[str]:
    return [u["id"] for u in directory.list_users(store, ORG, directory.Query(per_page=200, **query))["users"]]


def _index_copy(store: Store) -> dict[str, Any]:
    """Every index key of the org with its content (to compare an incremental index with a rebuilt one)."""
    r = store.redis
    found: dict[str, Any] = {}
    for key in sorted(str(k) for k in r.scan_iter(store.keys("dir", ORG, "*"))):
        kind = r.type(key)
        if kind == "zset":
            found[key] = r.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            found[key] = r.hgetall(key)
    found.pop(store.keys("dir", ORG, "built"), None)
    return found


def _assert_same_as_rebuilt(store: Store) -> None:
    before = _index_copy(store)
    for key in before:
        store.redis.delete(key)
    store.directory.rebuild(ORG)
    assert _index_copy(store) == before


def test_each_kind_of_write_keeps_the_index_true(app: Flask) -> None:
    with app.app_context():
        store = services().store
        ada, bob, cy = (seed_user(ORG, n, state=s, provider=p) for n, s, p in
                        ((1, "running", "microsoft"), (2, "paused", "exchange"), (3, "running", "google")))
        seed_user(OTHER_ORG, 9)
        assert _ids(store) == [ada, bob, cy]
        # A state change moves the user between the filtered copies.
        store.mailboxes.pause(ada)
        assert _ids(store, state="paused") == [ada, bob] and _ids(store, state="running") == [cy]
        store.mailboxes.admin_disable(cy, "off")
        assert _ids(store, state="disabled_error", provider="google") == [cy]
        # A run record moves the last-run order.
        store.mailboxes.update(bob, last_run=run_record(at=2_000_000_000))
        store.mailboxes.update(ada, last_run=run_record(at=1_900_000_000))
        assert _ids(store, sort="last_run", descending=True)[:2] == [bob, ada]
        # A rename (the next Salesforce login saves the user again) re-sorts and re-indexes the search.
        user = store.users.get(cy)
        assert user is not None
        user.display_name = "Aaron Zed"
        store.users.save(user)
        assert _ids(store)[0] == cy
        assert _ids(store, search="zed") == [cy] and _ids(store, search="user 00003") == []
        store.users.update(bob, last_seen_at=3_000_000_000.0)
        assert _ids(store, sort="last_seen", descending=True)[0] == bob
        # Another provider and address.
        store.mailboxes.activate(ada, "google", "ada.new@acme.example")
        assert _ids(store, search="ada.new") == [ada] and _ids(store, provider="google") == [cy, ada]
        _assert_same_as_rebuilt(store)
        # Deactivated, then the mailbox's hash gone: the row says not activated.
        store.mailboxes.deactivate(ada)
        assert _ids(store, state="deactivated") == [ada]
        store.mailboxes.delete(ada)
        assert _ids(store, state="not_activated", provider="none") == [ada]
        _assert_same_as_rebuilt(store)
        # A user removed leaves nothing behind.
        removed = store.users.get(bob)
        assert removed is not None
        store.users.remove(removed)
        assert bob not in _ids(store) and _ids(store, search="user2") == []
        assert not any(bob in str(v) for v in _index_copy(store).values())
        summary = directory.summary(store, ORG, 80)
        assert summary["users"] == 2 and summary["mailboxes"]["disabled_error"] == 1


def test_search_sort_and_pages_answer_as_the_rows_say(app: Flask) -> None:
    with app.app_context():
        store = services().store
        for n in range(40):
            seed_user(ORG, n, state=("running", "paused")[n % 2], provider=("exchange", "google")[n % 3 == 0])
        every = directory.list_users(store, ORG, directory.Query(per_page=200))["users"]
        assert [r["name"] for r in every] == sorted(r["name"] for r in every)
        page2 = directory.list_users(store, ORG, directory.Query(per_page=7, page=2, descending=True))
        assert [r["name"] for r in page2["users"]] == sorted((r["name"] for r in every), reverse=True)[7:14]
        assert page2["total"] == 40 and page2["pages"] == 6
        found = directory.list_users(store, ORG, directory.Query(search="USER1", state="paused", per_page=200))
        expected = sorted(r["name"] for r in every if r["username"].startswith("user1") and r["state"] == "paused")
        assert [r["name"] for r in found["users"]] == expected and found["total"] == len(expected)
        # A word inside the address: the domain part is found, a middle of a word is not.
        assert directory.list_users(store, ORG, directory.Query(search="acme"))["total"] == 40
        assert directory.list_users(store, ORG, directory.Query(search="cme"))["total"] == 0


def test_an_org_indexed_before_the_index_existed_is_built_at_its_first_read(app: Flask) -> None:
    with app.app_context():
        store = services().store
        uids = [seed_user(ORG, n) for n in range(5)]
        for key in store.redis.scan_iter(store.keys("dir", ORG, "*")):
            store.redis.delete(key)
        assert _ids(store) == sorted(uids, key=lambda u: store.users.get(u).display_name)  # type: ignore[union-attr]


@pytest.mark.parametrize("query", [{}, {"state": "running"}, {"state": "running", "provider": "google"},
                                   {"search": "user1"}, {"search": "acme", "state": "paused", "sort": "last_run"}])
def test_round_trips_per_page_do_not_grow_with_the_org(app: Flask, query: dict[str, Any]) -> None:
    trips = RoundTrips()
    counted: list[int] = []
    with app.app_context():
        store = services().store
        for size in (10, 120):
            for n in range(len(counted) * 10, size):
                seed_user(ORG, n, state=("running", "paused")[n % 2], provider=("exchange", "google")[n % 3 == 0])
            directory.list_users(store, ORG, directory.Query(**query))  # the index is built by now
            trips.count = 0
            with trips.counting():
                directory.list_users(store, ORG, directory.Query(per_page=50, **query))
            counted.append(trips.count)
    assert counted[0] == counted[1] <= 4, counted


def test_flask_directory_rebuild_indexes_existing_users(app: Flask) -> None:
    with app.app_context():
        store = services().store
        uid = seed_user(ORG, 1)
        for key in store.redis.scan_iter(store.keys("dir", "*")):
            store.redis.delete(key)
    result = app.test_cli_runner().invoke(args=["directory", "rebuild", ORG])
    assert result.exit_code == 0 and f"{ORG}: 1 user(s) indexed" in result.output
    with app.app_context():
        assert store.redis.get(store.keys("dir", ORG, "built")) and _ids(store, search="user1") == [uid]
