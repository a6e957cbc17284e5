"""Reading ahead (``backend.sync.prefetch.ReadAhead``): order, the bound, errors where they belong, stopping."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from backend.sync.prefetch import ReadAhead


class Source:
    """A generator of numbers that notes what it was asked for, from which thread, and whether it was closed."""

    def __init__(self, count: int, fail_after: int | None = None) -> None:
        self.count = count
        self.fail_after = fail_after
        self.pulled = 0
        self.threads: set[str] = set()
        self.finished = threading.Event()

    def items(self) -> Iterator[int]:
        """The numbers 0..count-1 (ValueError after ``fail_after`` of them, when set)."""
        try:
            for i in range(self.count):
                if self.fail_after is not None and i == self.fail_after:
                    raise ValueError(f"mail server broke after {i}")
                self.pulled += 1
                self.threads.add(threading.current_thread().name)
                yield i
        finally:
            self.finished.set()


def wait_for(condition: object, seconds: float = 5.0) -> bool:
    """True once ``condition()`` holds (False after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_every_item_comes_in_order_from_the_reader_thread() -> None:
    source = Source(100)
    reader = ReadAhead(source.items(), limit=7, name="reader-under-test")
    assert list(reader) == list(range(100))
    assert source.threads == {"reader-under-test"}
    assert list(reader) == []  # ended stays ended


# ``most``: what waits (up to the limit, or one item past it) and the one the reader holds, waiting for room.
@pytest.mark.parametrize("limit, weight, most", [(5, 1, 5 + 1), (50, 10, 5 + 1), (1, 3, 1 + 1)])
def test_the_reader_stops_at_the_limit_plus_one_item(limit: int, weight: int, most: int) -> None:
    source = Source(1000)
    reader = ReadAhead(source.items(), limit=limit, weight=lambda _: weight)
    assert wait_for(lambda: source.pulled >= limit // weight)
    time.sleep(0.2)  # it would go on now if it were unbounded
    assert source.pulled <= most
    assert next(reader) == 0  # room made: it reads on
    assert wait_for(lambda: source.pulled >= min(most, limit // weight + 1))
    reader.close()


def test_an_error_comes_after_the_items_read_before_it() -> None:
    source = Source(10, fail_after=4)
    reader = ReadAhead(source.items(), limit=100)
    got = [next(reader) for _ in range(4)]
    with pytest.raises(ValueError, match="after 4"):
        next(reader)
    assert got == [0, 1, 2, 3]
    with pytest.raises(StopIteration):
        next(reader)


def test_close_mid_way_stops_the_reader_and_closes_the_source() -> None:
    source = Source(10_000)
    reader = ReadAhead(source.items(), limit=3)
    assert next(reader) == 0
    reader.close()
    assert source.finished.wait(5)  # the generator's finally ran (in the reader thread)
    pulled = source.pulled
    time.sleep(0.1)
    assert source.pulled == pulled < 10_000
    with pytest.raises(StopIteration):
        next(reader)


def test_close_does_not_wait_out_a_slow_request() -> None:
    # A run stopped by its deadline must not wait for the reader's request in flight (up to the
    # request timeout): close returns at once, and the reader drops what it gets and ends by itself.
    release = threading.Event()

    def slow() -> Iterator[int]:
        yield 0
        release.wait(10)  # a mail server that takes its time with the next page
        yield 1

    reader = ReadAhead(slow(), limit=5)
    assert next(reader) == 0
    began = time.monotonic()
    reader.close()
    assert time.monotonic() - began < 1.5
    release.set()
    with pytest.raises(StopIteration):
        next(reader)


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ValueError):
        ReadAhead(iter([1]), limit=limit)


@pytest.mark.parametrize("emails, deletions, weight", [(0, 0, 1), (50, 0, 50), (3, 4, 7), (0, 20, 20)])
def test_a_page_weighs_its_changes_and_at_least_one(emails: int, deletions: int, weight: int) -> None:
    from backend.connectors.mailbox import ChangePage, Deletion, Folder
    from backend.sync.run import page_weight
    from tests.sync.items import mail

    page = ChangePage(folder=Folder.INBOX, emails=[mail() for _ in range(emails)],
                      deletions=[Deletion(folder=Folder.INBOX, remote_id=f"r{i}") for i in range(deletions)])
    assert page_weight(page) == weight
