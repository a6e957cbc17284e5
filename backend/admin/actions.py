"""What an administrator does to a user's sync, each action recorded in the org's audit log.

The actions change state through the mailbox repository's transitions (so they never undo a
person's concurrent change) and say whether a run should start now; enqueuing it is the caller's
(the API's) part, since this package sits below the jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from backend.store import Store
from backend.store.mailboxes import InvalidTransition, SyncState

ACTIONS = ("enable", "disable", "pause", "resume", "sync", "reset")
# Sync now from the console: at most once a minute per mailbox.
SYNC_NOW_SECONDS = 60
MAX_BULK = 500
DISABLED_MESSAGE = "Your administrator turned sync off for this mailbox."
RESET_WHILE_RUNNING = "A run is in progress for this user. Reset once it has finished."


@dataclass(frozen=True)
class Outcome:
    """What one action did to one user: ``ok``, or an error code (``invalid_state``, ``rate_limited``...)."""

    uid: str
    status: str
    state: str = ""
    message: str = ""
    run_now: bool = False

    def as_dict(self) -> dict[str, object]:
        """The JSON the API answers for this user."""
        body: dict[str, object] = {"id": self.uid, "status": self.status, "state": self.state or None}
        if self.message:
            body["message"] = self.message
        return body


def _state_message(state: SyncState, action: str) -> str:
    return f"Sync is {state.value.replace('_', ' ')} for this user, so it cannot be {_VERBS[action]}."


_VERBS = {"enable": "enabled", "disable": "disabled", "pause": "paused", "resume": "resumed",
          "sync": "synced now", "reset": "reset"}


def _never(uid: str) -> bool:
    return False


def act(store: Store, uid: str, action: str, now: float | None = None,
        running: Callable[[str], bool] = _never) -> Outcome:
    """Apply ``action`` to the user's sync mailbox (the caller checked the user is of the admin's org).

    ``running(uid)``: whether the mailbox's run job is in progress now (the jobs' part, below which
    this package sits); Reset is refused then.
    """
    now = time.time() if now is None else now
    repo = store.mailboxes
    mailbox = repo.get(uid)
    if mailbox is None:
        return Outcome(uid, "invalid_state", SyncState.NOT_ACTIVATED.value,
                       _state_message(SyncState.NOT_ACTIVATED, action))
    try:
        if action == "pause":
            mailbox = repo.pause(uid)
            store.schedule.remove(uid)
        elif action == "resume":
            mailbox = repo.resume(uid)
            return Outcome(uid, "ok", mailbox.state.value, run_now=True)
        elif action == "disable":
            mailbox = repo.admin_disable(uid, DISABLED_MESSAGE)
            store.schedule.remove(uid)
        elif action == "enable":
            mailbox = repo.enable(uid)
            # A held mailbox the person had deactivated is only released: nothing to run yet.
            return Outcome(uid, "ok", mailbox.state.value, run_now=mailbox.state is SyncState.RUNNING)
        elif action in ("sync", "reset"):
            if mailbox.state is not SyncState.RUNNING:
                raise InvalidTransition(mailbox.state, action)
            if action == "sync":
                allowed, _ = store.ratelimit.hit("admin-sync", uid, 1, SYNC_NOW_SECONDS)
                if not allowed:
                    return Outcome(uid, "rate_limited", mailbox.state.value,
                                   "This mailbox was synced less than a minute ago. Try again shortly.")
            else:
                if running(uid):
                    # The run in flight would save its cursors after ours are cleared: the Reset undone.
                    return Outcome(uid, "invalid_state", mailbox.state.value, RESET_WHILE_RUNNING)
                # The next run reads again from the start of the last complete run's window; the
                # Message-ID dedup makes what it finds a second time harmless.
                repo.clear_cursors(uid)
            return Outcome(uid, "ok", mailbox.state.value, run_now=True)
        else:
            raise ValueError(action)
    except InvalidTransition as exc:
        return Outcome(uid, "invalid_state", exc.current.value, _state_message(exc.current, action))
    return Outcome(uid, "ok", mailbox.state.value)


def record(store: Store, org_id: str, actor: str, action: str, outcomes: list[Outcome]) -> None:
    """One audit entry for an action on one user or a selection (with what happened to each)."""
    done = [o.uid for o in outcomes if o.status == "ok"]
    refused = {o.uid: o.status for o in outcomes if o.status != "ok"}
    store.audit.record(org_id, actor, action, [o.uid for o in outcomes],
                       {"done": len(done), "refused": refused} if refused else {"done": len(done)})
