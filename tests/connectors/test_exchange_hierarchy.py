"""A quiet Exchange run is one SyncFolderHierarchy call (plus NTLM's handshake): at most 3 requests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from backend.connectors.exchange.cursor import Cursor
from backend.connectors.exchange.hierarchy import FULL_CHECK_SECONDS
from backend.connectors.mailbox import ChangePage, Folder, SyncWindow
from sandbox.harness.exchange import ADDRESS, ExchangeHarness
from sandbox.tls import CertPair, TestCA

CUSTOMER = "carol@customer.example"


@pytest.fixture
def harness(ca: TestCA, server_cert: CertPair) -> Iterator[ExchangeHarness]:
    """The Exchange harness (NTLM, as the benchmark's mailbox)."""
    h = ExchangeHarness(ca.ca_path, server_cert)
    yield h
    h.close()


def _run(harness: ExchangeHarness, cursors: dict[str, str]) -> tuple[list[ChangePage], dict[str, str], int]:
    """One run's pages, the cursors it leaves, and the HTTP requests it made."""
    connector = harness.connector()
    pages = list(connector.read_changes(cursors, SyncWindow.starting(datetime.now(UTC), backfill_days=6)))
    connector.close()
    after = dict(cursors)
    after.update({p.folder.value: p.cursor for p in pages if p.cursor})
    return pages, after, connector.calls


def _ops(harness: ExchangeHarness, name: str) -> int:
    return harness.state.operations.count(name)


def _mail(harness: ExchangeHarness, folder: str, n: int) -> None:
    harness.add_email(folder, subject=f"Question {n}", sender=CUSTOMER if folder == "inbox" else ADDRESS,
                      to=[ADDRESS] if folder == "inbox" else [CUSTOMER], message_id=f"<h-{n}@customer.example>",
                      when=datetime.now(UTC) - timedelta(minutes=5))


def test_a_run_with_nothing_new_makes_at_most_three_requests(harness: ExchangeHarness) -> None:
    _mail(harness, "inbox", 1)
    _, cursors, first_calls = _run(harness, {})
    before = len(harness.state.operations)
    pages, again, calls = _run(harness, cursors)
    assert calls <= 3
    assert harness.state.operations[before:] == ["SyncFolderHierarchy"]
    assert not any(p.emails or p.events or p.deletions for p in pages)
    assert {f.value for f in Folder} == set(again)
    assert first_calls > calls


def test_only_the_folder_that_changed_is_read_and_nothing_is_missed(harness: ExchangeHarness) -> None:
    _mail(harness, "inbox", 1)
    _, cursors, _ = _run(harness, {})
    _mail(harness, "sent", 2)
    syncs = _ops(harness, "SyncFolderItems")
    pages, cursors, _ = _run(harness, cursors)
    assert [e.message_id for p in pages for e in p.emails] == ["<h-2@customer.example>"]
    assert _ops(harness, "SyncFolderItems") - syncs == 1  # Sent Items only
    # A deletion in the inbox is a change too.
    remote = next(i.id for i in harness.state.items.values() if i.folder == "inbox")
    harness.delete_email(remote)
    pages, cursors, _ = _run(harness, cursors)
    assert [d.remote_id for p in pages for d in p.deletions] == [remote]
    pages, _, calls = _run(harness, cursors)
    assert calls <= 3 and not any(p.deletions for p in pages)


def test_an_interrupted_run_reads_every_folder_next_time(harness: ExchangeHarness) -> None:
    _mail(harness, "inbox", 1)
    _, cursors, _ = _run(harness, {})
    # The calendar's cursor is from before this run's hierarchy state (a run stopped before it).
    stale = Cursor.decode(cursors["calendar"])
    assert stale is not None and stale.hierarchy
    cursors["calendar"] = Cursor(stale.floor, stale.ceiling, stale.state, stale.folder_id, "", stale.checked).encode()
    syncs = _ops(harness, "SyncFolderItems")
    _run(harness, cursors)
    assert _ops(harness, "SyncFolderItems") - syncs == 3


def test_an_expired_hierarchy_state_reads_every_folder(harness: ExchangeHarness) -> None:
    _mail(harness, "inbox", 1)
    _, cursors, _ = _run(harness, {})
    harness.expire_cursors()
    _mail(harness, "inbox", 2)
    pages, _, _ = _run(harness, cursors)
    assert "<h-2@customer.example>" in [e.message_id for p in pages for e in p.emails]


def test_a_folder_not_read_for_hours_is_read_even_if_the_hierarchy_says_unchanged(harness: ExchangeHarness) -> None:
    _, cursors, _ = _run(harness, {})
    old = int(time.time()) - FULL_CHECK_SECONDS - 1
    for name, raw in list(cursors.items()):
        c = Cursor.decode(raw)
        assert c is not None
        cursors[name] = Cursor(c.floor, c.ceiling, c.state, c.folder_id, c.hierarchy, old).encode()
    syncs = _ops(harness, "SyncFolderItems")
    _, after, _ = _run(harness, cursors)
    assert _ops(harness, "SyncFolderItems") - syncs == 3
    assert all((Cursor.decode(v) or Cursor.fresh(Folder.INBOX, SyncWindow.starting(datetime.now(UTC), 6))).checked
               > old for v in after.values())


def test_an_older_cursor_still_reads() -> None:
    cursor = Cursor.decode("ews1|1700000000||state|with|bars")
    assert cursor is not None and cursor.state == "state|with|bars" and cursor.hierarchy == ""
    assert Cursor.decode(cursor.encode()) == cursor
