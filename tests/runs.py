"""Running the engine in-process from a test, inside the app context the test holds."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from backend.extensions import services


def run_mailbox(mailbox_id: str, interactive: bool = False) -> dict[str, Any]:
    """One run of the app's sync engine for ``mailbox_id``, as a worker does it."""
    return services().engine.run(mailbox_id, interactive=interactive)


def pin_batch_items(monkeypatch: pytest.MonkeyPatch, items: int) -> None:
    """Run the engine with ``SYNC_BATCH_ITEMS`` set to ``items`` for this test."""
    svc = services()
    monkeypatch.setattr(svc, "settings", dataclasses.replace(svc.settings, SYNC_BATCH_ITEMS=items))
