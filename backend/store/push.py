"""Push notifications: a mailbox's subscriptions at the provider, their index, push health, the debounce.

A subscription's ``clientState`` is kept only as a keyed hash (``state_hash``); the webhook hashes
what arrives and compares in constant time (:func:`backend.security.crypto.constant_time_equal`).
The id index also says whose a subscription is (Graph's or a Gmail watch), so each hook accepts
only its own provider's. Subscriptions Graph asks to reauthorize wait in a set for the renewal job.
The renewal set is scored by when a mailbox's earliest subscription should be renewed, so the clock
reads only what is due. The debounce turns a burst of notifications into one planned run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import redis

from backend.store.batch import Batch, Deferred
from backend.store.keys import Keys

# Plans one run for a burst: nothing when a run is already planned (it will read this change too);
# otherwise at now + debounce, but never sooner than ``gap`` after the previous planned run.
# KEYS: the planned-run key, the last-planned key. ARGV: now, debounce, gap. Returns the time or ''.
_PLAN = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return ''
end
local now = tonumber(ARGV[1])
local gap = tonumber(ARGV[3])
local at = now + tonumber(ARGV[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last + gap > at then
  at = last + gap
end
redis.call('SET', KEYS[1], tostring(at), 'EX', math.ceil(at - now) + 120)
redis.call('SET', KEYS[2], tostring(at), 'EX', math.ceil(at - now + gap) + 60)
return tostring(at)
"""

# Whose a subscription id is: only Graph's may be named by /hooks/graph, only Gmail's by /hooks/gmail.
GRAPH = "graph"
GMAIL = "gmail"
# A Gmail watch's id (Graph's are GUIDs): how an index entry written before ``provider`` is told apart.
GMAIL_ID_PREFIX = "gmail:"
# Subscriptions Graph asked to reauthorize wait this long for the mailbox's renewal job.
REAUTH_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Subscription:
    """One subscription at the provider: what it watches, until when, and its clientState's hash."""

    id: str
    mailbox_id: str
    kind: str  # "inbox", "sentitems", "calendar" (Graph) or "gmail"
    resource: str
    expires_at: float
    state_hash: str
    created_at: float
    # Renewed at least this often (seconds; 0: only the half-life rule), e.g. a Gmail watch daily.
    renew_every: float = 0.0

    @property
    def renew_at(self) -> float:
        """Well before expiry: when half of the lifetime it was granted has passed (or ``renew_every``)."""
        half = self.created_at + (self.expires_at - self.created_at) / 2
        return min(half, self.created_at + self.renew_every) if self.renew_every else half

    @property
    def provider(self) -> str:
        """``gmail`` for a Gmail watch, else ``graph``."""
        return GMAIL if self.kind == "gmail" else GRAPH


class IndexEntry(NamedTuple):
    """A subscription id's index entry: its mailbox, its clientState's hash, and whose it is."""

    mailbox_id: str
    state_hash: str
    provider: str  # GRAPH or GMAIL


def _entry(sub_id: str, found: list[Any]) -> IndexEntry | None:
    if not found[0] or not found[1]:
        return None
    # Entries written before the field existed: the id says whose it is.
    provider = str(found[2]) if found[2] else GMAIL if sub_id.startswith(GMAIL_ID_PREFIX) else GRAPH
    return IndexEntry(str(found[0]), str(found[1]), provider)


@dataclass(frozen=True)
class PushHealth:
    """Whether instant sync works for a mailbox, and if not, why (for the pane and the console)."""

    on: bool
    reason: str = ""
    since: float = 0.0


def health_of(raw: Any) -> PushHealth | None:
    """Push health from the mailbox hash's ``push`` field (JSON text or already decoded), or None."""
    if raw is None:
        return None
    value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    if not isinstance(value, dict):
        return None
    return PushHealth(bool(value.get("on")), str(value.get("reason") or ""), float(value.get("since") or 0))


class PushRepo:
    """Subscriptions per mailbox, the subscription id index, push health, and the notification debounce."""

    def __init__(self, client: redis.Redis, keys: Keys, hasher: Callable[[str], str]) -> None:
        self._r = client
        self._keys = keys
        self._hash = hasher

    def hash_state(self, client_state: str) -> str:
        """The keyed hash a clientState is kept (and compared) as."""
        return self._hash(client_state)

    # --- subscriptions ---------------------------------------------------------------------------

    @property
    def renew_key(self) -> str:
        """The sorted set of mailboxes with subscriptions, scored by their next renewal."""
        return self._keys("push", "renew")

    def _subs_key(self, mid: str) -> str:
        return self._keys("push", "subs", mid)

    def _index_key(self, sub_id: str) -> str:
        return self._keys("push", "sub", sub_id)

    def save(self, sub: Subscription) -> None:
        """Keep (or replace) a subscription, its index entry, and the mailbox's renewal time."""
        with self._r.pipeline() as pipe:
            pipe.hset(self._subs_key(sub.mailbox_id), sub.id, json.dumps(asdict(sub)))
            pipe.hset(self._index_key(sub.id), mapping={"mid": sub.mailbox_id, "state": sub.state_hash,
                                                       "provider": sub.provider})
            # Kept a day past expiry: a late notification still finds its mailbox (and is ignored).
            pipe.expireat(self._index_key(sub.id), int(sub.expires_at) + 86400)
            pipe.execute()
        self._reschedule(sub.mailbox_id)

    def forget(self, mid: str, sub_id: str) -> None:
        """Drop one subscription of a mailbox (and its index entry)."""
        with self._r.pipeline() as pipe:
            pipe.hdel(self._subs_key(mid), sub_id)
            pipe.delete(self._index_key(sub_id))
            pipe.execute()
        self._reschedule(mid)

    def of(self, mid: str) -> list[Subscription]:
        """A mailbox's subscriptions."""
        raw = self._r.hvals(self._subs_key(mid))
        return sorted((Subscription(**json.loads(v)) for v in raw), key=lambda s: s.kind)

    def lookup(self, sub_id: str) -> IndexEntry | None:
        """The index entry of a subscription id, or None when unknown."""
        return _entry(sub_id, self._r.hmget(self._index_key(sub_id), ["mid", "state", "provider"]))

    def lookup_many(self, sub_ids: list[str]) -> list[IndexEntry | None]:
        """:meth:`lookup` for several ids in one round trip."""
        with self._r.pipeline(transaction=False) as pipe:
            for sub_id in sub_ids:
                pipe.hmget(self._index_key(sub_id), ["mid", "state", "provider"])
            answers = pipe.execute()
        return [_entry(sub_id, a) for sub_id, a in zip(sub_ids, answers, strict=True)]

    def reschedule(self, mid: str) -> None:
        """Score the mailbox in the renewal set by its earliest renewal again (or drop it: none left)."""
        self._reschedule(mid)

    def _reschedule(self, mid: str) -> None:
        subs = self.of(mid)
        if subs:
            self._r.zadd(self.renew_key, {mid: min(s.renew_at for s in subs)})
        else:
            self._r.zrem(self.renew_key, mid)

    def due_for_renewal(self, now: float, limit: int = 1000) -> list[str]:
        """Mailboxes whose earliest subscription should be renewed by ``now``."""
        return [str(m) for m in self._r.zrangebyscore(self.renew_key, "-inf", now, start=0, num=limit)]

    def subscribed(self, limit: int = 100_000) -> list[str]:
        """Every mailbox with subscriptions."""
        return [str(m) for m in self._r.zrange(self.renew_key, 0, limit - 1)]

    def postpone(self, mid: str, when: float) -> None:
        """Look at a mailbox's renewal again at ``when`` (a renewal job is on its way)."""
        self._r.zadd(self.renew_key, {mid: when}, xx=True)

    def _reauth_key(self, mid: str) -> str:
        return self._keys("push", "reauth", mid)

    def ask_renewal(self, mid: str, sub_ids: Iterable[str], now: float) -> None:
        """Graph asked to reauthorize ``sub_ids``: the mailbox's next renewal job renews them, whatever their age."""
        ids = list(sub_ids)
        if not ids:
            return
        with self._r.pipeline() as pipe:
            pipe.sadd(self._reauth_key(mid), *ids)
            pipe.expire(self._reauth_key(mid), REAUTH_TTL_SECONDS)
            # Due now too: should a renewal job be running past its last look at the set, the
            # clock's next check queues another (the one running keeps the unique id meanwhile).
            pipe.zadd(self.renew_key, {mid: now}, xx=True, lt=True)
            pipe.execute()

    def take_renewals(self, mid: str) -> frozenset[str]:
        """The subscriptions asked for by :meth:`ask_renewal` since the last take, the set emptied in the same step."""
        with self._r.pipeline() as pipe:  # MULTI: an id added meanwhile is either taken here or kept
            pipe.smembers(self._reauth_key(mid))
            pipe.delete(self._reauth_key(mid))
            members, _ = pipe.execute()
        return frozenset(str(m) for m in members)

    # --- health ----------------------------------------------------------------------------------

    # Health lives on the mailbox's hash (field ``push``), so the console's one-round-trip rows
    # and the pane's status read it with everything else.

    def _mailbox_key(self, mid: str) -> str:
        return self._keys("mailbox", mid)

    def set_health(self, mid: str, on: bool, reason: str = "", now: float | None = None) -> None:
        """Record whether instant sync works for the mailbox (``reason`` says why not)."""
        value = {"on": on, "reason": reason[:300], "since": time.time() if now is None else now}
        # Only on a mailbox that exists: a late job must not create a hash for a deleted one.
        self._r.eval("if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'push', ARGV[1]) end",
                     1, self._mailbox_key(mid), json.dumps(value, separators=(",", ":"), sort_keys=True))

    def health(self, mid: str) -> PushHealth | None:
        """The mailbox's push health, or None when push is not in use for it."""
        return health_of(self._r.hget(self._mailbox_key(mid), "push"))

    def health_in(self, batch: Batch, mid: str) -> Deferred[PushHealth | None]:
        """:meth:`health`, read with the batch."""
        batch.pipe.hget(self._mailbox_key(mid), "push")
        return batch.defer(health_of)

    def healthy(self, mid: str) -> bool:
        """True while instant sync works for the mailbox."""
        found = self.health(mid)
        return found is not None and found.on

    def clear_health(self, mid: str) -> None:
        """Forget push health (the mailbox no longer has subscriptions)."""
        self._r.hdel(self._mailbox_key(mid), "push")

    # --- debounce --------------------------------------------------------------------------------

    def plan_run(self, mid: str, now: float, debounce: float, gap: float) -> float | None:
        """When to run the mailbox for this notification, or None when a run is already planned."""
        at = self._r.eval(_PLAN, 2, self._keys("push", "planned", mid), self._keys("push", "last", mid),
                          str(now), str(debounce), str(gap))
        return float(at) if at else None

    def run_started(self, mid: str) -> None:
        """A run began: it reads every change so far, so the next notification plans another."""
        self._r.delete(self._keys("push", "planned", mid))
