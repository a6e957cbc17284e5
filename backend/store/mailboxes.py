"""Sync mailboxes: the state of sync for one user, changed only through this repository's methods.

One user has one sync mailbox; its id is the user's id. The state is an enum, and every change of
state is an atomic transition (WATCH/MULTI) from a set of allowed states, so a run finishing while
the person presses Pause can never undo the pause.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from backend.store.batch import Batch, Deferred
from backend.store.codec import decode, encode, encode_value
from backend.store.directory_script import MAILBOX_FIELDS, reindex
from backend.store.keys import Keys
from backend.store.mailbox_record import (
    InvalidTransition,
    LockedByAdmin,
    SyncMailbox,
    SyncState,
    default_settings,
)
from backend.store.secrets import SecretStore

__all__ = ["InvalidTransition", "LockedByAdmin", "MailboxRepo", "SyncMailbox", "SyncState", "default_settings"]


# States in which a mailbox has a connection (credentials a run may refresh).
_CONNECTED = (SyncState.RUNNING, SyncState.PAUSED, SyncState.DISABLED_ERROR)

# Saves cursors only while the mailbox still has a connection (running, paused, disabled): a run
# that finishes after the person pressed Deactivate (which deletes the cursors) must not write them
# back. ARGV[1] is the number of allowed states, then the states, then folder/cursor pairs.
_SAVE_IF_CONNECTED = """
local state = redis.call('HGET', KEYS[1], 'state')
local n = tonumber(ARGV[1])
local allowed = false
for i = 2, n + 1 do
  if state == ARGV[i] then allowed = true end
end
if not allowed then
  return 0
end
for i = n + 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 1
"""

# Which states each action may start from.
_FROM: dict[str, frozenset[SyncState]] = {
    "activate": frozenset(SyncState),
    "pause": frozenset({SyncState.RUNNING}),
    "resume": frozenset({SyncState.PAUSED}),
    "deactivate": frozenset({SyncState.RUNNING, SyncState.PAUSED, SyncState.DISABLED_ERROR}),
    "disable": frozenset({SyncState.RUNNING}),
    # An administrator's Disable also stops a paused mailbox; Enable retries a disabled one.
    "admin_disable": frozenset({SyncState.RUNNING, SyncState.PAUSED}),
    "enable": frozenset({SyncState.DISABLED_ERROR}),
    # An administrator's Enable of a held mailbox the person deactivated: the hold goes, the state stays.
    "release": frozenset({SyncState.DEACTIVATED}),
}
# The person's own ways back to running: refused while an administrator holds the mailbox off.
_HELD_OFF = frozenset({"activate", "resume"})


class MailboxRepo:
    """Reads sync mailboxes and applies state transitions atomically."""

    def __init__(self, client: redis.Redis, keys: Keys, secrets: SecretStore) -> None:
        self._r = client
        self._keys = keys
        self._secrets = secrets

    def _key(self, mid: str) -> str:
        return self._keys("mailbox", mid)

    def get(self, mid: str) -> SyncMailbox | None:
        """The mailbox, or None."""
        data = self._r.hgetall(self._key(mid))
        return decode(SyncMailbox, data) if data else None  # type: ignore[arg-type]

    def get_in(self, batch: Batch, mid: str) -> Deferred[SyncMailbox | None]:
        """:meth:`get`, read with the batch."""
        batch.pipe.hgetall(self._key(mid))
        return batch.defer(lambda data: decode(SyncMailbox, data) if data else None)

    def ensure(self, uid: str, org_id: str) -> SyncMailbox:
        """The user's sync mailbox, created as not activated when missing (seeded at login)."""
        existing = self.get(uid)
        if existing is not None:
            return existing
        fresh = SyncMailbox(id=uid, user_id=uid, org_id=org_id)
        # HSETNX on the id field makes creation race-free: a concurrent ensure keeps the first.
        if self._r.hsetnx(self._key(uid), "id", encode_value(uid)):
            mapping = encode(fresh)
            mapping.pop("id")
            with self._r.pipeline() as pipe:
                pipe.hset(self._key(uid), mapping=mapping)  # type: ignore[arg-type]
                pipe.sadd(self._keys("mailboxes"), uid)
                reindex(pipe, self._keys.prefix, uid)
                pipe.execute()
        return self.get(uid) or fresh

    def all_ids(self) -> list[str]:
        """Every mailbox id."""
        return sorted(str(m) for m in self._r.smembers(self._keys("mailboxes")))

    def due_details(self, mids: list[str]) -> list[tuple[str, str]]:
        """(state, org id) of each mailbox, in one round trip (for the clock; values as stored, decoded)."""
        with self._r.pipeline(transaction=False) as pipe:
            for mid in mids:
                pipe.hmget(self._key(mid), "state", "org_id")
            rows = pipe.execute()
        result: list[tuple[str, str]] = []
        for state, org in rows:
            result.append((json.loads(state) if state else "", json.loads(org) if org else ""))
        return result

    def _transition(self, mid: str, action: str, changes: dict[str, Any]) -> SyncMailbox:
        allowed = _FROM[action]
        key = self._key(mid)
        with self._r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw, held = pipe.hmget(key, ["state", "admin_hold"])
                    if raw is None:
                        raise KeyError(mid)
                    current = SyncState(json.loads(raw))
                    if action in _HELD_OFF and held is not None and json.loads(held):
                        raise LockedByAdmin(action)
                    if current not in allowed:
                        raise InvalidTransition(current, action)
                    changes["updated_at"] = time.time()
                    pipe.multi()
                    pipe.hset(key, mapping={k: encode_value(v) for k, v in changes.items()})
                    reindex(pipe, self._keys.prefix, mid)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        result = self.get(mid)
        assert result is not None
        return result

    def activate(
        self,
        mid: str,
        provider: str,
        address: str,
        aliases: Iterable[str] = (),
        connection: dict[str, Any] | None = None,
    ) -> SyncMailbox:
        """Connect (or reconnect) a mailbox: running, errors cleared, cursors kept when same mailbox."""
        before = self.get(mid)
        if before is not None and before.address and (
            before.address.lower() != address.lower() or before.provider != provider
        ):
            # Another mailbox: the old cursors describe other folders and must not be reused.
            self.clear_cursors(mid)
            self.update(mid, caught_up_at=0.0)
        return self._transition(
            mid,
            "activate",
            {
                "state": SyncState.RUNNING,
                "provider": provider,
                "address": address.lower(),
                "aliases": sorted({a.lower() for a in aliases}),
                "connection": connection or {},
                "error": None,
                "auth_failures": 0,
                "notified_incident": "",
                "activated_at": time.time(),
                "quiet_runs": 0,
                "interval_seconds": 0,
            },
        )

    def pause(self, mid: str) -> SyncMailbox:
        """Stop runs, keeping credentials and cursors."""
        return self._transition(mid, "pause", {"state": SyncState.PAUSED, "paused_at": time.time()})

    def resume(self, mid: str) -> SyncMailbox:
        """Start runs again after a pause."""
        return self._transition(mid, "resume", {"state": SyncState.RUNNING, "paused_at": 0.0})

    def deactivate(self, mid: str) -> SyncMailbox:
        """Forget the mailbox connection: credentials and cursors removed (Salesforce login stays)."""
        mailbox = self._transition(
            mid,
            "deactivate",
            {
                "state": SyncState.DEACTIVATED,
                "error": None,
                "auth_failures": 0,
                "connection": {},
                "aliases": [],
                "caught_up_at": 0.0,
            },
        )
        self._secrets.delete("mailbox", mid)
        self.clear_cursors(mid)
        return mailbox

    def disable(self, mid: str, code: str, message: str, details: dict[str, Any] | None = None) -> SyncMailbox:
        """Stop sync because of an error that needs the person (shown until they reconnect).

        ``details``: the whole error to keep (with ``code`` and ``message``), written in the same transition.
        """
        error = details or {"code": code, "message": message, "since": time.time()}
        return self._transition(mid, "disable", {"state": SyncState.DISABLED_ERROR, "error": error})

    def admin_disable(self, mid: str, message: str) -> SyncMailbox:
        """Stop sync at an administrator's request (credentials and cursors kept; Enable undoes it)."""
        return self._transition(mid, "admin_disable", {
            "state": SyncState.DISABLED_ERROR, "admin_hold": True,
            "error": {"code": "disabled_by_admin", "message": message, "since": time.time()}})

    def enable(self, mid: str) -> SyncMailbox:
        """Run a disabled mailbox again with its saved connection (errors, failure streak, admin hold cleared).

        A held mailbox the person deactivated has no connection left: the hold is lifted, it stays
        deactivated, and the person may connect it again.
        """
        current = self.get(mid)
        if current is not None and current.state is SyncState.DEACTIVATED and current.admin_hold:
            return self._transition(mid, "release", {"admin_hold": False})
        return self._transition(mid, "enable", {"state": SyncState.RUNNING, "error": None, "auth_failures": 0,
                                                "notified_incident": "", "paused_at": 0.0, "admin_hold": False})

    def delete(self, mid: str) -> None:
        """Forget a sync mailbox entirely (state, cursors, secrets); its user's row shows not activated."""
        self._secrets.delete("mailbox", mid)
        with self._r.pipeline() as pipe:
            pipe.delete(self._key(mid), self._keys("cursors", mid))
            pipe.srem(self._keys("mailboxes"), mid)
            reindex(pipe, self._keys.prefix, mid)
            pipe.execute()

    def update(self, mid: str, **changes: object) -> None:
        """Change fields that are not the state (settings, last run, counters)."""
        if "state" in changes:
            raise ValueError("state changes go through the transition methods")
        changes["updated_at"] = time.time()
        mapping: dict[Any, Any] = {k: encode_value(v) for k, v in changes.items()}
        if MAILBOX_FIELDS.isdisjoint(changes):
            self._r.hset(self._key(mid), mapping=mapping)
            return
        with self._r.pipeline() as pipe:  # the console's index follows in the same MULTI
            pipe.hset(self._key(mid), mapping=mapping)
            reindex(pipe, self._keys.prefix, mid)
            pipe.execute()

    def clear_error(self, mid: str) -> bool:
        """A run got through: its failure streak and error cleared, unless the mailbox was disabled meanwhile.

        A disable while the run went on (the org's access broke, an administrator) left the reason
        it stopped in ``error``: ``resume_org`` and the pane read it there. False when left as it was.
        """
        key = self._key(mid)
        with self._r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.hget(key, "state")
                    if raw is None or SyncState(json.loads(raw)) is SyncState.DISABLED_ERROR:
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.hset(key, mapping={"auth_failures": encode_value(0), "error": encode_value(None),
                                            "updated_at": encode_value(time.time())})
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def add_auth_failure(self, mid: str, error: Callable[[int, dict[str, Any]], dict[str, Any]]) -> int:
        """Count one more run in a row refused on authentication and set ``error(count, previous error)``.

        Only while running or paused (0 otherwise, nothing written): a run in flight when the
        administrator pressed Disable or the org's access broke must not replace the reason it stopped
        (the pane, console and digest show it; ``resume_org`` looks for its code).
        """
        key = self._key(mid)
        active = {encode_value(s) for s in (SyncState.RUNNING, SyncState.PAUSED)}
        with self._r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    state, raw, previous = pipe.hmget(key, ["state", "auth_failures", "error"])
                    if state not in active:
                        pipe.unwatch()
                        return 0
                    count = int(json.loads(raw)) + 1 if raw else 1
                    details = error(count, (json.loads(previous) if previous else None) or {})
                    pipe.multi()
                    pipe.hset(key, mapping={"auth_failures": encode_value(count), "error": encode_value(details),
                                            "updated_at": encode_value(time.time())})
                    pipe.execute()
                    return count
                except redis.WatchError:
                    continue

    def put_secret_if_connected(self, mid: str, name: str, value: str, generation: float | None = None) -> bool:
        """Store a mailbox secret (encrypted) only while the mailbox is connected; True when stored.

        A run refreshing a token writes it back through here: WATCH on the mailbox hash makes the
        check and the write atomic with Deactivate (which changes the state, then deletes the
        secrets), so a deleted credential never comes back. With ``generation`` (the mailbox's
        ``activated_at`` when the run began) a reconnect meanwhile also refuses the stale write.
        """
        key = self._key(mid)
        secret_key = self._keys("secret", "mailbox", mid, name)
        token = self._secrets.box.encrypt(value)
        connected = {encode_value(s) for s in _CONNECTED}
        with self._r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    state, activated = pipe.hmget(key, ["state", "activated_at"])
                    if state not in connected:
                        pipe.unwatch()
                        return False
                    if generation is not None and (activated is None or float(json.loads(activated)) != generation):
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.set(secret_key, token)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    # Cursors live apart from the mailbox hash: they are written after every page of writes.
    def cursors(self, mid: str) -> dict[str, str]:
        """The saved connector cursors (folder -> cursor)."""
        return {str(k): str(v) for k, v in self._r.hgetall(self._keys("cursors", mid)).items()}

    def save_cursors_if_connected(self, mid: str, cursors: dict[str, str]) -> bool:
        """Save folder cursors atomically unless the mailbox was deactivated meanwhile; True when saved.

        The one cursor writer: call it only after the writes the cursors cover succeeded.
        """
        if not cursors:
            return True
        args: list[str] = [str(len(_CONNECTED)), *(encode_value(s) for s in _CONNECTED)]
        for folder, cursor in cursors.items():
            args.extend((folder, cursor))
        saved = self._r.eval(_SAVE_IF_CONNECTED, 2, self._key(mid), self._keys("cursors", mid), *args)
        return bool(saved)

    def clear_cursors(self, mid: str, folder: str | None = None) -> None:
        """Forget cursors (all, or one folder's)."""
        if folder is None:
            self._r.delete(self._keys("cursors", mid))
        else:
            self._r.hdel(self._keys("cursors", mid), folder)
