"""The run schedule (``P schedule``): a sorted set of mailbox ids scored by their next run time.

Beside it, ``P schedule:claims`` keeps, per mailbox, the planned start of the slot the clock last
claimed and the lease it set then: the next run is planned from that start (``backend.sync.cadence``),
not from when the run happened to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from backend.store.batch import Batch, Deferred
from backend.store.keys import Keys

# One clock tick, atomically: take up to ARGV[3] members due by ARGV[1]; unschedule the ones no
# longer running; move those of an org backing off to the end of its backoff; lease the rest until
# ARGV[2] and sort them by their run job (KEYS: schedule, claims, the clock's last tick, the claimed members
# by planned start (until their run schedules the next); ARGV[4..6]: key prefixes of
# mailboxes, orgs and run jobs; ARGV[7]: the job statuses that mean "finished", comma-separated).
# A member whose score is still our own lease (the clock crashed or its run never rescheduled) keeps
# its planned start; so does one whose run is still on its way (that run's slot is the one it serves).
_CLAIM_TICK = """
redis.call('SET', KEYS[3], ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local now = tonumber(ARGV[1])
local finished = {}
for s in string.gmatch(ARGV[7], '[^,]+') do finished[s] = true end
local backoff = {}
local run, replace, busy, stopped, held = {}, {}, {}, {}, {}
for i = 1, #due, 2 do
  local mid, score = due[i], due[i + 1]
  local row = redis.call('HMGET', ARGV[4] .. mid, 'state', 'org_id')
  local state = row[1] and cjson.decode(row[1]) or ''
  if state ~= 'running' then
    redis.call('ZREM', KEYS[1], mid)
    redis.call('HDEL', KEYS[2], mid)
    redis.call('ZREM', KEYS[4], mid)
    stopped[#stopped + 1] = mid
  else
    local org = row[2] and cjson.decode(row[2]) or ''
    if backoff[org] == nil then
      backoff[org] = (org ~= '' and redis.call('HGET', ARGV[5] .. org, 'api_backoff_until')) or '0'
    end
    if tonumber(backoff[org]) > now then
      redis.call('ZADD', KEYS[1], backoff[org], mid)
      redis.call('ZREM', KEYS[4], mid)
      held[#held + 1] = mid
    else
      local status = redis.call('HGET', ARGV[6] .. mid, 'status')
      local planned, leased, prior = score, false, nil
      local claim = redis.call('HGET', KEYS[2], mid)
      if claim then
        local p, l = string.match(claim, '^(%S+) (%S+)$')
        prior, leased = p, (l == score)
      end
      if status and not finished[status] then
        busy[#busy + 1] = mid
        if prior then planned = prior end
      else
        if leased then planned = prior end
        if status then replace[#replace + 1] = mid else run[#run + 1] = mid end
      end
      redis.call('ZADD', KEYS[1], 'XX', ARGV[2], mid)
      redis.call('HSET', KEYS[2], mid, planned .. ' ' .. redis.call('ZSCORE', KEYS[1], mid))
      redis.call('ZADD', KEYS[4], planned, mid)
    end
  end
end
return {run, replace, busy, stopped, held}
"""


# Unschedules a mailbox (KEYS: its hash, the schedule, the claims, the waiting; ARGV: its id, the running state
# as stored) unless it is running: a Resume or Enable since the caller read its state wins.
_REMOVE_UNLESS_RUNNING = """
if redis.call('HGET', KEYS[1], 'state') == ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""
_RUNNING = '"running"'  # the state as the mailbox hash stores it (JSON)


@dataclass(frozen=True)
class TickClaim:
    """The mailboxes one clock tick took, by what happens to them next."""

    run: list[str] = field(default_factory=list)  # running, no run job: enqueue a run
    replace: list[str] = field(default_factory=list)  # a finished run job left behind: replace it
    busy: list[str] = field(default_factory=list)  # a run already queued or running: nothing to do
    stopped: list[str] = field(default_factory=list)  # no longer running: unscheduled
    held: list[str] = field(default_factory=list)  # the org is backing off: moved to its end

    @property
    def due(self) -> int:
        """How many were due."""
        return len(self.run) + len(self.replace) + len(self.busy) + len(self.stopped) + len(self.held)


class ScheduleRepo:
    """The run schedule: a sorted set of mailbox ids scored by their next run time (epoch seconds).

    A clock tick reads only what is due (``ZRANGEBYSCORE ... LIMIT``), so its cost follows the
    number of due mailboxes, not the number of mailboxes.
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys
        self._claim_tick = client.register_script(_CLAIM_TICK)

    @property
    def key(self) -> str:
        """The sorted set's key."""
        return self._keys("schedule")

    @property
    def claims_key(self) -> str:
        """The hash of each mailbox's last claimed slot: ``{planned start} {lease}``."""
        return self._keys("schedule", "claims")

    @property
    def waiting_key(self) -> str:
        """The mailboxes the clock claimed whose run has not scheduled the next yet, by planned start."""
        return self._keys("schedule", "waiting")

    def set_next(self, mid: str, when: float) -> None:
        """Schedule the next run of ``mid`` at ``when`` (it no longer waits for a claimed run)."""
        with self._r.pipeline(transaction=False) as pipe:
            pipe.zadd(self.key, {mid: when})
            pipe.zrem(self.waiting_key, mid)
            pipe.execute()

    def next_of(self, mid: str) -> float | None:
        """When ``mid`` runs next, or None when unscheduled."""
        score = self._r.zscore(self.key, mid)
        return float(score) if score is not None else None

    def next_in(self, batch: Batch, mid: str) -> Deferred[float | None]:
        """:meth:`next_of`, read with the batch."""
        batch.pipe.zscore(self.key, mid)
        return batch.defer(lambda score: float(score) if score is not None else None)

    def remove(self, mid: str) -> None:
        """Unschedule ``mid``."""
        with self._r.pipeline() as pipe:
            pipe.zrem(self.key, mid)
            pipe.hdel(self.claims_key, mid)
            pipe.zrem(self.waiting_key, mid)
            pipe.execute()

    def remove_unless_running(self, mid: str) -> bool:
        """Unschedule ``mid`` unless its mailbox is running by now; True when removed.

        A run's end reads "paused" and unschedules: a Resume in between (state running, scheduled
        again) must win, or the mailbox would run no more. Checked and removed in one script.
        """
        return bool(self._r.eval(_REMOVE_UNLESS_RUNNING, 4, self._keys("mailbox", mid), self.key, self.claims_key,
                                 self.waiting_key, mid, _RUNNING))

    def claim_tick(self, now: float, lease_seconds: float, limit: int, run_key_prefix: str,
                   finished: tuple[str, ...]) -> TickClaim:
        """One clock tick's claim, in one round trip: up to ``limit`` due mailboxes, sorted (see :class:`TickClaim`).

        It also notes the tick's time (:meth:`health`).
        The claimed ones are leased until ``now + lease`` (the next tick does not take them again
        while their job waits; a crash before the enqueue loses nothing: the lease runs out). A
        mailbox's run job is the hash at ``run_key_prefix + mid``, finished when its ``status`` is
        one of ``finished``.
        """
        lists = self._claim_tick(
            keys=[self.key, self.claims_key, self.tick_key, self.waiting_key],
            args=[repr(now), repr(now + lease_seconds), str(limit), self._keys("mailbox", ""),
                  self._keys("org", ""), run_key_prefix, ",".join(finished)],
        )
        run, replace, busy, stopped, held = ([str(m) for m in part] for part in lists)
        return TickClaim(run, replace, busy, stopped, held)

    def slot_start(self, mid: str, now: float) -> float | None:
        """The planned start of the slot a run of ``mid`` ending at ``now`` served, or None when unknown.

        Claimed by the clock (the score is still its lease): the claimed slot's planned start. Due and
        not claimed (a Sync now got there first): the due time. Otherwise (a retry, or a Sync now
        between two slots): the slot the clock last claimed.
        """
        with self._r.pipeline(transaction=False) as pipe:
            pipe.zscore(self.key, mid)
            pipe.hget(self.claims_key, mid)
            score, claim = pipe.execute()
        planned, _, lease = str(claim).partition(" ") if claim else ("", "", "")
        if score is not None and claim and lease and float(lease) == float(score):
            return float(planned)
        if score is not None and float(score) <= now:
            return float(score)
        return float(planned) if planned else None

    @property
    def tick_key(self) -> str:
        """When the clock last ticked (set by :meth:`claim_tick`; ``/healthz`` and the metrics read it)."""
        return self._keys("clock", "last_tick")

    def health(self) -> tuple[float | None, float | None]:
        """The clock's last tick and the earliest planned start not yet served (the most overdue mailbox's).

        Due and unclaimed, or claimed and its run not done: a claimed member's score is its lease,
        so its planned start is read from the waiting set. One round trip.
        """
        with self._r.pipeline(transaction=False) as pipe:
            pipe.get(self.tick_key)
            pipe.zrange(self.key, 0, 0, withscores=True)
            pipe.zrange(self.waiting_key, 0, 0, withscores=True)
            tick, first, waiting = pipe.execute()
        starts = [float(rows[0][1]) for rows in (first, waiting) if rows]
        return (float(tick) if tick else None), (min(starts) if starts else None)

    def count(self) -> int:
        """How many mailboxes are scheduled."""
        return int(self._r.zcard(self.key))
