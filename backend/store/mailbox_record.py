"""A sync mailbox as a record: its state enum, its fields and the refusals of a state change.

The repository that changes it (atomically, only through its methods) is ``backend.store.mailboxes``,
which re-exports these names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class SyncState(StrEnum):
    """Where sync stands for a mailbox (names are part of the HTTP contract)."""

    NOT_ACTIVATED = "not_activated"
    RUNNING = "running"
    PAUSED = "paused"
    DISABLED_ERROR = "disabled_error"
    DEACTIVATED = "deactivated"


class LockedByAdmin(Exception):
    """The person tried to reconnect or resume a mailbox an administrator disabled (only Enable undoes it)."""

    def __init__(self, action: str) -> None:
        super().__init__(f"cannot {action}: an administrator turned sync off")
        self.action = action


class InvalidTransition(Exception):
    """The requested change does not apply to the mailbox's current state."""

    def __init__(self, current: SyncState, action: str) -> None:
        super().__init__(f"cannot {action} while sync is {current.value}")
        self.current = current
        self.action = action


def default_settings() -> dict[str, Any]:
    """What a new user syncs: emails and events; cancelled meetings are marked, not deleted."""
    return {
        "sync_emails": True,
        "sync_events": True,
        "blocklist": [],
        "cancelled_events": "mark",
    }


@dataclass
class SyncMailbox:
    """Sync state and settings of one mailbox. Credentials live in the secret store."""

    id: str
    user_id: str
    org_id: str
    state: SyncState = SyncState.NOT_ACTIVATED
    provider: str = ""
    address: str = ""
    aliases: list[str] = field(default_factory=list)
    # Non-secret connection details (Exchange login and EWS URL, Microsoft tenant, ...).
    connection: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=default_settings)
    # Why sync stopped or is failing: {"code", "message", "since"}; None when healthy.
    error: dict[str, Any] | None = None
    auth_failures: int = 0
    # Id of the incident the user was already emailed about (one email per incident).
    notified_incident: str = ""
    activated_at: float = 0.0
    paused_at: float = 0.0
    last_run: dict[str, Any] | None = None
    # When the last run that read every folder to its end started: mail received before it is
    # handled. A resync reads back to it (see SyncWindow.starting); 0 before the first such run.
    caught_up_at: float = 0.0
    # Seconds between background runs now (stretched after quiet runs).
    interval_seconds: int = 0
    quiet_runs: int = 0
    # An administrator's Disable holds the mailbox off: the person's reconnect and Resume are refused
    # until an administrator's Enable (kept through the person's Deactivate, so that is no way around).
    admin_hold: bool = False
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.state = SyncState(self.state)

    @property
    def activated(self) -> bool:
        """True in the states where a connection exists."""
        return self.state in (SyncState.RUNNING, SyncState.PAUSED, SyncState.DISABLED_ERROR)
