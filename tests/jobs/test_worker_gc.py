"""The work horse's garbage collector: young objects collected every 50,000 allocations, in the horse only."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
import rq

from backend.jobs import worker as module


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    """The process's thresholds, put back after the test."""
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_the_horse_tunes_the_collector_before_it_runs_the_job(thresholds: tuple[int, int, int],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int, int]] = []

    def job_runs(self: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(gc.get_threshold())

    monkeypatch.setattr(rq.Worker, "main_work_horse", job_runs)
    monkeypatch.setattr(module, "write_as", lambda name: None)
    gc.set_threshold(700, 10, 10)
    module.Worker.main_work_horse(object.__new__(module.Worker))
    assert seen == [module.HORSE_GC_THRESHOLDS]
    assert module.HORSE_GC_THRESHOLDS[0] > 700 and gc.isenabled()
