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
