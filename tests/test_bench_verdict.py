"""The ✓ / ✗ column of ``bench/run``: each row's value against its target."""

from __future__ import annotations

from typing import Any

import pytest

from bench.verdict import MET, MISSED, NONE, first_number, verdict


@pytest.mark.parametrize(("value", "target", "expected"), [
    (1.08, "≤ 1.2", MET), (5.39, "≤ 1.5", MISSED), (1.5, "<= 1.5", MET), (1.5, "< 1.5", MISSED),
    (0, "0", MET), (2, "0", MISSED), ("0 5xx of 10000 (10000 answered 202)", "0 5xx", MET),
    ("3 (never ran: 0)", "0", MISSED), ("1000", "<= 1000 (mailboxes)", MET), ("0.984", "< 1", MET),
    (221.0, 1800.0, MET), (0.2, 0.01, MISSED), (3, ">= 2", MET), (14.0, "flat", NONE),
    ("median 15.0 min", "(the baseline)", NONE), (None, "≤ 2", NONE), ("n/a", "≤ 2", NONE), (1.0, None, NONE),
])
def test_a_value_is_held_to_its_target(value: Any, target: Any, expected: str) -> None:
    assert verdict({"id": "P", "value": value, "target": target}) == expected


@pytest.mark.parametrize(("met", "expected"), [(True, MET), (False, MISSED), (None, NONE)])
def test_a_row_that_says_whether_it_met_is_believed(met: bool | None, expected: str) -> None:
    assert verdict({"value": "median 29.3 s, worst 47.1 s", "target": "median < 30 s, worst < 120 s",
                    "met": met}) == expected


def test_the_first_number_of_a_value() -> None:
    assert first_number("p50 1.2 ms, p95 4.9 ms") == 50.0  # the label's digits count: rows with such text say "met"
    assert first_number(True) is None and first_number(7) == 7.0 and first_number("-0.5 MB") == -0.5


def test_a_bench_module_that_fails_is_a_missed_row_and_the_others_rows_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.machinery
    import importlib.util
    import sys
    import types
    from pathlib import Path

    path = str(Path(__file__).resolve().parent.parent / "bench" / "run")
    loader = importlib.machinery.SourceFileLoader("bench_run_under_test", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    run = importlib.util.module_from_spec(spec)
    loader.exec_module(run)

    def fails(quick: bool) -> list[dict[str, object]]:
        raise RuntimeError("the fake went away")

    broken, fine = types.ModuleType("bench.broken_bench"), types.ModuleType("bench.fine_bench")
    broken.table_rows = fails  # type: ignore[attr-defined]
    fine.table_rows = lambda quick: [{"id": "F1", "measure": "m", "value": 1, "target": "≤ 2", "detail": ""}]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.broken_bench", broken)
    monkeypatch.setitem(sys.modules, "bench.fine_bench", fine)
    monkeypatch.setattr(run, "MODULES", ("bench.broken_bench", "bench.fine_bench"))
    rows, skipped = run.collect(True)
    assert skipped == []
    assert [r["id"] for r in rows] == ["broken_bench", "F1"]
    assert verdict(rows[0]) == MISSED and "RuntimeError" in str(rows[0]["value"])
    assert verdict(rows[1]) == MET
