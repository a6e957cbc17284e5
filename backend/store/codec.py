"""Dataclass <-> Redis hash: each field JSON-encoded, so types survive and fields update alone."""

from __future__ import annotations

import json
from dataclasses import fields
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")


def encode_value(value: Any) -> str:
    """JSON text of one field value (enums as their value)."""
    if isinstance(value, Enum):
        value = value.value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def encode(obj: Any) -> dict[str, str]:
    """A dataclass instance as a hash mapping."""
    return {f.name: encode_value(getattr(obj, f.name)) for f in fields(obj)}


def decode(cls: type[T], mapping: dict[str, str]) -> T:
    """Build ``cls`` from a hash mapping; unknown fields are ignored, missing ones defaulted."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {k: json.loads(v) for k, v in mapping.items() if k in known}
    return cls(**values)
