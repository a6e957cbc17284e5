"""The console's index of an org's users (``P dir:{org}:*``): pages, search and counts that do not read the org.

Maintained by the user and mailbox repositories in the same MULTI as their writes
(:mod:`backend.store.directory_script`). What each read costs:

* a page, unfiltered or filtered by state *or* provider: one ZRANGEBYLEX / ZREVRANGEBYLEX ``LIMIT
  offset count`` on the sort's zset and a ZCARD, one round trip, O(log n + offset + count) in Redis;
* filtered by state *and* provider: ZINTERSTORE of the two filtered copies into a key deleted in the
  same MULTI, O(k) for k the smaller filtered set (a few ms for 10,000 users), still one round trip;
* searched: ZRANGEBYLEX on the term zset for the words starting with the text (at most
  :data:`MAX_TERM_HITS` entries), then HMGET of those users' index records (state, provider, sort
  keys) from ``P dir:{org}:rows``; filter, sort and page them here: two round trips, work bounded by
  :data:`MAX_TERM_HITS`. A search that finds more says so (``truncated``). It matches the start of a
  word of a name, username, email or sync mailbox (``acme`` finds ``ada@acme.example``; ``cme`` does
  not), case folded for ASCII and Latin-1.

The index is built for an org's existing users at its first read (the ``P dir:{org}:built`` marker
holds :data:`INDEX_VERSION`) or by ``flask directory rebuild``: both reindex the org's users 200 per
script call, so no call holds Redis for long.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import redis

from backend.store.directory_script import SORTS, TERM_BYTES, fold, reindex
from backend.store.keys import Keys

# Bump when the script derives entries differently: every org's index is rebuilt at its next read.
INDEX_VERSION = "1"
MAX_TERM_HITS = 20_000
REBUILD_CHUNK = 200
STATES = ("not_activated", "running", "paused", "disabled_error", "deactivated")
_WORD = re.compile(r"[0-9a-z\u0080-\U0010ffff]")


@dataclass(frozen=True)
class IndexPage:
    """The user ids of one page in order, how many match in all, and whether a search stopped early."""

    uids: list[str]
    total: int
    truncated: bool = False


def search_text(text: str) -> str:
    """The text as the term index holds it: folded, from its first letter or digit, at most 64 bytes."""
    folded = fold(text.strip())
    start = _WORD.search(folded)
    if start is None:
        return ""
    return folded[start.start():].encode()[:TERM_BYTES].decode(errors="ignore")


class DirectoryIndex:
    """Reads of the console's per-org user index, and its (re)build."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def _base(self, org_id: str, *parts: str) -> str:
        return self._keys("dir", org_id, *parts)

    def _sorted(self, org_id: str, sort: str, state: str, provider: str) -> str:
        if state:
            return self._base(org_id, sort, "s", state)
        if provider:
            return self._base(org_id, sort, "p", provider)
        return self._base(org_id, sort)

    def ensure_built(self, org_id: str) -> None:
        """Build the org's index when it was never built (or by an older version): idempotent."""
        if self._r.get(self._base(org_id, "built")) != INDEX_VERSION:
            self.rebuild(org_id)

    def rebuild(self, org_id: str) -> int:
        """Re-derive every user of the org, 200 per call (writes meanwhile stay right); how many are indexed."""
        uids = sorted(str(u) for u in self._r.smembers(self._keys("org", "users", org_id)))
        indexed = 0
        for start in range(0, len(uids), REBUILD_CHUNK):
            with self._r.pipeline(transaction=False) as pipe:
                reindex(pipe, self._keys.prefix, *uids[start:start + REBUILD_CHUNK], org=org_id)
                indexed += int(pipe.execute()[0])
        # Entries of users no longer in the org's set (removed before the index existed).
        known = set(uids)
        stale = [str(u) for u in self._r.hkeys(self._base(org_id, "rows")) if str(u) not in known]
        if stale:
            with self._r.pipeline(transaction=False) as pipe:
                reindex(pipe, self._keys.prefix, *stale, org=org_id)
                pipe.execute()
        self._r.set(self._base(org_id, "built"), INDEX_VERSION)
        return indexed

    def page(self, org_id: str, sort: str, descending: bool, state: str, provider: str,
             offset: int, count: int) -> IndexPage:
        """One page of user ids in ``sort`` order, filtered by state and provider (``none``: no provider)."""
        if sort not in SORTS:
            raise ValueError(sort)
        self.ensure_built(org_id)
        key = self._sorted(org_id, sort, state, provider)
        with self._r.pipeline(transaction=True) as pipe:
            if state and provider:
                key = self._base(org_id, "tmp", sort, state, provider)
                pipe.zinterstore(key, [self._base(org_id, sort, "s", state),
                                       self._base(org_id, sort, "p", provider)])
            if descending:
                pipe.zrevrangebylex(key, "+", "-", offset, count)
            else:
                pipe.zrangebylex(key, "-", "+", offset, count)
            pipe.zcard(key)
            if state and provider:
                pipe.delete(key)
            results = pipe.execute()
        start = 1 if state and provider else 0
        members, total = results[start], results[start + 1]
        return IndexPage([str(m).rpartition("\x00")[2] for m in members], int(total))

    def search(self, org_id: str, text: str, sort: str, descending: bool, state: str, provider: str,
               offset: int, count: int) -> IndexPage:
        """One page of the users with a word starting with ``text``, filtered, in ``sort`` order."""
        if sort not in SORTS:
            raise ValueError(sort)
        needle = search_text(text)
        if not needle:
            return self.page(org_id, sort, descending, state, provider, offset, count)
        self.ensure_built(org_id)
        low = b"[" + needle.encode()
        high = b"(" + needle.encode() + b"\xff"  # no UTF-8 text holds the byte 0xff
        hits = self._r.zrangebylex(self._base(org_id, "terms"), low, high, 0, MAX_TERM_HITS)
        uids = list(dict.fromkeys(str(h).rpartition("\x00")[2] for h in hits))
        records = self._r.hmget(self._base(org_id, "rows"), uids) if uids else []
        matches: list[tuple[str, str]] = []
        for uid, raw in zip(uids, records, strict=True):
            if raw is None:
                continue
            record: dict[str, Any] = json.loads(raw)
            if (state and record["s"] != state) or (provider and record["p"] != provider):
                continue
            matches.append((str(record["m"][sort]), uid))
        # The members sort by their UTF-8 bytes; Python's code point order is the same.
        matches.sort(reverse=descending)
        return IndexPage([uid for _, uid in matches[offset:offset + count]], len(matches),
                         truncated=len(hits) >= MAX_TERM_HITS)

    def counts(self, org_id: str, stale_before: float) -> dict[str, Any]:
        """Users, mailboxes by state, and the running ones' health: never succeeded, stale, oldest success."""
        self.ensure_built(org_id)
        with self._r.pipeline(transaction=False) as pipe:
            pipe.zcard(self._base(org_id, "name"))
            for state in STATES:
                pipe.zcard(self._base(org_id, "name", "s", state))
            pipe.zcount(self._base(org_id, "success"), 0, 0)
            pipe.zrangebyscore(self._base(org_id, "success"), "(0", "+inf", 0, 1, withscores=True)
            pipe.zcount(self._base(org_id, "fresh"), "-inf", f"({stale_before}")
            users, *states, never, oldest, stale = pipe.execute()
        return {"users": int(users), "states": dict(zip(STATES, (int(s) for s in states), strict=True)),
                "never_succeeded": int(never), "oldest_success": float(oldest[0][1]) if oldest else None,
                "stale": int(stale)}

    def state_members(self, org_id: str, state: str) -> list[str]:
        """Every user id of the org in ``state`` (for the daily digest)."""
        self.ensure_built(org_id)
        return [str(m).rpartition("\x00")[2] for m in self._r.zrangebylex(self._base(org_id, "name", "s", state),
                                                                           "-", "+")]

    def stale_members(self, org_id: str, stale_before: float) -> list[str]:
        """Running mailboxes whose last success (or activation, if none) is older than ``stale_before``."""
        self.ensure_built(org_id)
        return [str(m) for m in self._r.zrangebyscore(self._base(org_id, "fresh"), "-inf", f"({stale_before}")]
