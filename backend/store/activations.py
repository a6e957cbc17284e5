"""Mass activation jobs: who asked, the addresses, progress n of N and one result per person.

``P activation:{id}`` is a hash (org, admin, provider, state, done, total, created_at);
``P activation:{id}:addresses`` a list of the addresses asked for, ``P activation:{id}:results``
a list of JSON results in the order they were decided. Kept 7 days.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis

from backend.store.keys import Keys

# Compare and set of the state: a job that finished meanwhile keeps its "done".
_MOVE_STATE = """
if redis.call('HGET', KEYS[1], 'state') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', ARGV[2])
  return 1
end
return 0
"""

TTL_SECONDS = 7 * 24 * 3600


@dataclass
class Activation:
    """One mass activation as the console polls it."""

    id: str
    org_id: str
    admin_uid: str
    provider: str
    state: str  # queued | running | done | failed
    done: int
    total: int
    created_at: float


class ActivationRepo:
    """Reads and writes mass activations."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def _key(self, aid: str, *rest: str) -> str:
        return self._keys("activation", aid, *rest)

    def create(self, org_id: str, admin_uid: str, provider: str, addresses: list[str]) -> Activation:
        """A new queued activation of ``addresses``."""
        aid = "act" + secrets.token_hex(10)
        now = time.time()
        with self._r.pipeline() as pipe:
            pipe.hset(self._key(aid), mapping={"org_id": org_id, "admin_uid": admin_uid, "provider": provider,
                                               "state": "queued", "done": 0, "total": len(addresses),
                                               "created_at": now})
            self._push_addresses(pipe, aid, addresses)
            if not addresses:
                pipe.delete(self._key(aid, "addresses"))
            for key in (self._key(aid), self._key(aid, "addresses"), self._key(aid, "results")):
                pipe.expire(key, TTL_SECONDS)
            pipe.execute()
        return Activation(aid, org_id, admin_uid, provider, "queued", 0, len(addresses), now)

    def _push_addresses(self, pipe: Any, aid: str, addresses: list[str]) -> None:
        """Append ``addresses`` to the activation's list in ``pipe``, a thousand a command."""
        for start in range(0, len(addresses), 1000):
            pipe.rpush(self._key(aid, "addresses"), *addresses[start:start + 1000])

    def get(self, aid: str) -> Activation | None:
        """The activation, or None."""
        raw: dict[str, str] = self._r.hgetall(self._key(aid))  # type: ignore[assignment]
        if not raw:
            return None
        return Activation(aid, raw["org_id"], raw["admin_uid"], raw["provider"], raw["state"], int(raw["done"]),
                          int(raw["total"]), float(raw["created_at"]))

    def addresses(self, aid: str) -> list[str]:
        """The addresses asked for, in order."""
        return [str(a) for a in self._r.lrange(self._key(aid, "addresses"), 0, -1)]

    def set_state(self, aid: str, state: str) -> None:
        """Move the activation to ``state``."""
        self._r.hset(self._key(aid), "state", state)

    def move_state(self, aid: str, before: str, after: str) -> bool:
        """Move the activation from ``before`` to ``after`` only if it is still ``before``; True when moved."""
        return bool(self._r.eval(_MOVE_STATE, 1, self._key(aid), before, after))

    def resolve(self, aid: str, addresses: list[str]) -> None:
        """"Everyone" resolved to ``addresses``: kept in place of the request, so a retried job goes on in the
        same list (Salesforce's list may have changed meanwhile: the results so far are positions in this one)."""
        with self._r.pipeline() as pipe:
            pipe.delete(self._key(aid, "addresses"))
            self._push_addresses(pipe, aid, addresses)
            pipe.expire(self._key(aid, "addresses"), TTL_SECONDS)
            pipe.hset(self._key(aid), "total", len(addresses))
            pipe.execute()

    def add_results(self, aid: str, results: list[dict[str, Any]]) -> None:
        """Append decided results and advance the progress by as many."""
        if not results:
            return
        with self._r.pipeline() as pipe:
            pipe.rpush(self._key(aid, "results"), *(json.dumps(r, sort_keys=True) for r in results))
            pipe.hincrby(self._key(aid), "done", len(results))
            pipe.expire(self._key(aid, "results"), TTL_SECONDS)
            pipe.execute()

    def results(self, aid: str) -> list[dict[str, Any]]:
        """Every result so far, in order."""
        return [json.loads(r) for r in self._r.lrange(self._key(aid, "results"), 0, -1)]
