"""exchangelib parses our EWS answers in 64 KiB slices, not one byte at a time (exchange/slices.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from backend.connectors.exchange.slices import SLICE_BYTES, LargeSliceResponse
from backend.connectors.mailbox import Folder, SyncWindow
from sandbox.harness.exchange import ADDRESS, ExchangeHarness
from sandbox.tls import CertPair, TestCA


@pytest.fixture
def harness(ca: TestCA, server_cert: CertPair) -> Iterator[ExchangeHarness]:
    """The Exchange harness."""
    h = ExchangeHarness(ca.ca_path, server_cert)
    yield h
    h.close()


@pytest.fixture
def slices(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every slice requests hands out of an already read body, from now on."""
    seen: list[int] = []
    original = requests.models.iter_slices  # type: ignore[attr-defined]

    def counting(string: Any, slice_length: int | None) -> Iterator[Any]:
        for piece in original(string, slice_length):
            seen.append(len(piece))
            yield piece

    monkeypatch.setattr(requests.models, "iter_slices", counting)
    return seen


def test_a_backfill_reads_its_answers_in_large_slices(harness: ExchangeHarness, slices: list[int]) -> None:
    now = datetime.now(UTC)
    for i in range(150):
        harness.add_email("inbox", subject=f"Question {i}", sender="carol@customer.example", to=[ADDRESS],
                          body="y" * 2000, message_id=f"<slice-{i}@customer.example>",
                          when=now - timedelta(hours=1, minutes=i))
    pages = list(harness.connector().read_changes({}, SyncWindow.starting(now, backfill_days=6), (Folder.INBOX,)))
    assert sum(len(p.emails) for p in pages) == 150
    body_bytes = sum(slices)
    # Over 300 KB of XML (150 bodies of 2 KB) came back; one byte a slice would be as many slices.
    assert body_bytes > 300_000
    assert len(slices) < 40
    assert max(slices) == SLICE_BYTES


def test_the_response_class_changes_only_the_default_slice() -> None:
    response = LargeSliceResponse()
    response._content = b"x" * (SLICE_BYTES + 10)  # a body already read, as requests keeps it
    response._content_consumed = True
    assert [len(s) for s in response.iter_content()] == [SLICE_BYTES, 10]
    assert [len(s) for s in response.iter_content(4)][:2] == [4, 4]
