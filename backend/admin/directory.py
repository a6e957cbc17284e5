"""The org's users as the console lists them: rows read in one round trip, filtered, sorted, paged.

Every row comes from the user's and the mailbox's hashes. A Lua script reads them inside Redis and
answers one JSON text (the stored field values are JSON already, so it only joins them): the rows
of an org cost one round trip for ten users or ten thousand. Reading 10,000 users' hashes still
takes Redis a few hundred milliseconds, so each process keeps an org's rows for
:data:`CACHE_SECONDS` (an administrator's own actions drop them at once): paging, filtering and
sorting then cost no Redis work at all.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from backend.store import Store
from backend.store.mailboxes import SyncState
from backend.store.push import health_of

USER_FIELDS = ("display_name", "username", "email", "last_seen_at")
MAILBOX_FIELDS = ("state", "provider", "address", "connection", "error", "last_run", "caught_up_at",
                  "activated_at", "push")
SORTS = ("name", "username", "mailbox", "state", "provider", "last_run", "last_seen")
MAX_PER_PAGE = 200
# No successful run for this long counts as stale (summary, digest).
STALE_SECONDS = 24 * 3600
# How long a process reuses an org's rows (runs' changes show within this; admin actions at once).
CACHE_SECONDS = 10.0

# KEYS[1]: the org's user set. ARGV[1]: the key prefix. Answers '[[uid, user fields..., mailbox
# fields..., quarantined], ...]' as one JSON text; a missing field is null.
_ROWS = """
local prefix = ARGV[1]
local uids = redis.call('SMEMBERS', KEYS[1])
local rows = {}
local function join(values, n)
  local out = {}
  for i = 1, n do
    local v = values[i]
    if v then out[i] = v else out[i] = 'null' end
  end
  return table.concat(out, ',')
end
for i, uid in ipairs(uids) do
  local u = redis.call('HMGET', prefix .. 'user:' .. uid, @USER@)
  local m = redis.call('HMGET', prefix .. 'mailbox:' .. uid, @MAILBOX@)
  local q = redis.call('LLEN', prefix .. 'quarantine:' .. uid)
  rows[i] = '[' .. cjson.encode(uid) .. ',' .. join(u, @NU@) .. ',' .. join(m, @NM@) .. ',' .. q .. ']'
end
return '[' .. table.concat(rows, ',') .. ']'
""".replace("@USER@", ", ".join(f"'{f}'" for f in USER_FIELDS)).replace(
    "@MAILBOX@", ", ".join(f"'{f}'" for f in MAILBOX_FIELDS)).replace(
    "@NU@", str(len(USER_FIELDS))).replace("@NM@", str(len(MAILBOX_FIELDS)))


def access_type(provider: str, connection: dict[str, Any]) -> str | None:
    """How the mailbox is read: ``app_only`` (admin consent), ``delegated`` (the person's consent), ``password``."""
    if not provider:
        return None
    if connection.get("app_only"):
        return "app_only"
    return "password" if provider == "exchange" else "delegated"


def _row(uid: str, user_values: list[Any], mailbox_values: list[Any], quarantined: int) -> dict[str, Any]:
    """One console row from the decoded field values (USER_FIELDS, MAILBOX_FIELDS order)."""
    user = dict(zip(USER_FIELDS, user_values, strict=True))
    mailbox = dict(zip(MAILBOX_FIELDS, mailbox_values, strict=True))
    connection = mailbox["connection"] or {}
    last = mailbox["last_run"] or None
    return {
        "id": uid,
        "name": user["display_name"] or "",
        "username": user["username"] or "",
        "email": user["email"] or "",
        "mailbox": mailbox["address"] or None,
        "provider": mailbox["provider"] or None,
        "access_type": access_type(mailbox["provider"] or "", connection),
        "state": mailbox["state"] or SyncState.NOT_ACTIVATED.value,
        "error": ({"code": mailbox["error"].get("code"), "message": mailbox["error"].get("message")}
                  if mailbox["error"] else None),
        "last_run": ({"finished_at": last.get("finished_at"), "status": last.get("status"),
                      "counts": last.get("counts") or {}, "error": (last.get("error") or {}).get("code")}
                     if last else None),
        "last_success_at": float(mailbox["caught_up_at"] or 0.0) or None,
        "activated_at": float(mailbox["activated_at"] or 0.0) or None,
        "issues": int(quarantined or 0),
        # Instant sync (Graph notifications): {"on", "reason"} once tried for the mailbox, else None.
        "instant_sync": ({"on": health.on, "reason": health.reason or None}
                         if (health := health_of(mailbox["push"])) is not None else None),
        "last_seen_at": float(user["last_seen_at"] or 0.0) or None,
    }


def read_org_rows(store: Store, org_id: str) -> list[dict[str, Any]]:
    """Every user of the org as a console row, from Redis now (one round trip)."""
    raw = store.redis.eval(_ROWS, 1, store.keys("org", "users", org_id), store.keys.prefix)
    # cjson encodes an empty Lua table as {}: an org with nobody has no rows.
    values = json.loads(raw) if raw and raw not in ("[]", "{}") else []
    nu = len(USER_FIELDS)
    return [_row(v[0], v[1:1 + nu], v[1 + nu:-1], v[-1]) for v in values]


def user_row(store: Store, uid: str) -> dict[str, Any] | None:
    """One user's row, from Redis now (one round trip)."""
    with store.redis.pipeline(transaction=False) as pipe:
        pipe.hmget(store.keys("user", uid), list(USER_FIELDS))
        pipe.hmget(store.keys("mailbox", uid), list(MAILBOX_FIELDS))
        pipe.llen(store.keys("quarantine", uid))
        user, mailbox, quarantined = pipe.execute()
    if all(v is None for v in user):
        return None
    decode = lambda values: [json.loads(v) if v is not None else None for v in values]  # noqa: E731
    return _row(uid, decode(user), decode(mailbox), int(quarantined))


class _RowCache:
    """Rows per (Redis client, org) for a few seconds; the client is held weakly (one app, one cache)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, str], tuple[Any, float, list[dict[str, Any]]]] = {}

    def get(self, store: Store, org_id: str) -> list[dict[str, Any]]:
        key = (id(store.redis), org_id)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0]() is store.redis and entry[1] > now:
                return entry[2]
        rows = read_org_rows(store, org_id)
        with self._lock:
            self._entries = {k: e for k, e in self._entries.items() if e[0]() is not None and e[1] > now}
            self._entries[key] = (weakref.ref(store.redis), now + CACHE_SECONDS, rows)
        return rows

    def forget(self, store: Store, org_id: str) -> None:
        with self._lock:
            self._entries.pop((id(store.redis), org_id), None)


_CACHE = _RowCache()


def org_rows(store: Store, org_id: str) -> list[dict[str, Any]]:
    """Every user of the org as a console row (this process's copy when younger than CACHE_SECONDS)."""
    return _CACHE.get(store, org_id)


def forget_rows(store: Store, org_id: str) -> None:
    """Drop the org's rows (after an administrator changed something): the next page reads Redis."""
    _CACHE.forget(store, org_id)


@dataclass(frozen=True)
class Query:
    """What the console asks of the list."""

    state: str = ""
    provider: str = ""
    search: str = ""
    sort: str = "name"
    descending: bool = False
    page: int = 1
    per_page: int = 50


def _sort_key(sort: str) -> Any:
    if sort == "last_run":
        return lambda r: (r["last_run"] or {}).get("finished_at") or ""
    if sort == "last_seen":
        return lambda r: r["last_seen_at"] or 0.0
    field = {"name": "name", "username": "username", "mailbox": "mailbox", "state": "state",
             "provider": "provider"}[sort]
    return lambda r: (str(r[field] or "").lower(), r["id"])


def _matches(row: dict[str, Any], query: Query, needle: str) -> bool:
    if query.state and row["state"] != query.state:
        return False
    if query.provider and (row["provider"] or "none") != query.provider:
        return False
    if needle:
        return any(needle in str(row[f] or "").lower() for f in ("name", "username", "email", "mailbox"))
    return True


def list_users(store: Store, org_id: str, query: Query) -> dict[str, Any]:
    """A page of the org's users, filtered by state and provider, searched by name or address, sorted."""
    needle = query.search.strip().lower()
    rows = [r for r in org_rows(store, org_id) if _matches(r, query, needle)]
    rows.sort(key=_sort_key(query.sort), reverse=query.descending)
    start = (query.page - 1) * query.per_page
    return {"total": len(rows), "page": query.page, "per_page": query.per_page,
            "pages": max(1, -(-len(rows) // query.per_page)),
            # Copies: the cached rows are shared by every request of this process.
            "users": [dict(row) for row in rows[start:start + query.per_page]]}


def summary(store: Store, org_id: str, budget_percent: int, now: float | None = None) -> dict[str, Any]:
    """The org at a glance: mailboxes by state, runs and failures in 24 h, API use, the oldest success."""
    now = time.time() if now is None else now
    rows = org_rows(store, org_id)
    states = {state.value: 0 for state in SyncState}
    oldest: float | None = None
    stale = never = 0
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
        if row["state"] == SyncState.RUNNING.value:
            success = row["last_success_at"] or 0.0
            if not success:
                never += 1
            elif oldest is None or success < oldest:
                oldest = success
            if now - (success or row["activated_at"] or now) > STALE_SECONDS:
                stale += 1
    runs, failures = store.runs.org_totals(org_id, now)
    org = store.orgs.get(org_id)
    usage = None
    if org.api_max:
        usage = {"used": org.api_used, "limit": org.api_max, "percent": round(100.0 * org.api_used / org.api_max, 1),
                 "budget_percent": budget_percent, "seen_at": org.api_seen_at or None}
    return {"org_id": org_id, "users": len(rows), "mailboxes": states, "runs_24h": runs, "failures_24h": failures,
            "api_usage": usage, "oldest_last_success_at": oldest, "stale_24h": stale,
            "never_succeeded": never,
            "backoff_until": org.api_backoff_until if org.api_backoff_until > now else None}
