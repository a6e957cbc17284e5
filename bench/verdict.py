"""Whether a benchmark row meets its target: the ✓ / ✗ column of ``bench/run`` and its exit status.

A row may say so itself (``"met": True | False | None``); otherwise its target is read as a bound
on the first number of its value: ``<= X``, ``≤ X``, ``< X``, ``>= X``, ``≥ X``, ``> X``, a bare
number (at most that, e.g. ``0`` or a mass activation's limit). Targets that are not a bound
(``flat``, ``(the baseline)``) have no verdict.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

MET, MISSED, NONE = "✓", "✗", "—"
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "≤": operator.le, "<": operator.lt, ">=": operator.ge, "≥": operator.ge, ">": operator.gt,
    "": operator.le,
}
_BOUND = re.compile(r"\s*(<=|≤|<|>=|≥|>)?\s*(-?\d+(?:\.\d+)?)(?:\s|$|\()")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def first_number(value: Any) -> float | None:
    """The first number in a row's value (a number, or text such as ``"0 5xx of 10000"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    found = _NUMBER.search(str(value))
    return float(found.group()) if found else None


def verdict(row: dict[str, Any]) -> str:
    """✓ when the row meets its target, ✗ when it does not, — when there is nothing to compare."""
    if "met" in row:
        return {True: MET, False: MISSED}.get(row["met"], NONE)
    value, target = first_number(row.get("value")), row.get("target")
    if value is None or target is None:
        return NONE
    if isinstance(target, int | float) and not isinstance(target, bool):
        return MET if value <= target else MISSED
    bound = _BOUND.match(str(target))
    if bound is None:
        return NONE
    return MET if _OPS[bound.group(1) or ""](value, float(bound.group(2))) else MISSED
