"""The org's users as the console lists them: a page from the store's index, then only that page's rows.

``store.directory`` (``backend/store/directory.py``) keeps per-org sorted sets per sort key, per
state and per provider, and a search term index, maintained in the same MULTI as every write of
those fields. A page is a check of the index's version, one round trip for its user ids (two for a
search) and one for its rows
(HMGET of at most 200 users and mailboxes): neither the round trips nor the Redis work grow with the
org, so no process keeps a copy of the rows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from backend.store import Store
from backend.store.directory_script import SORTS
from backend.store.mailboxes import SyncState
from backend.store.push import health_of

USER_FIELDS = ("display_name", "username", "email", "last_seen_at")
MAILBOX_FIELDS = ("state", "provider", "address", "connection", "error", "last_run", "caught_up_at",
                  "activated_at", "push")
MAX_PER_PAGE = 200
# No successful run for this long counts as stale (summary, digest).
STALE_SECONDS = 24 * 3600
__all__ = ["SORTS", "Query", "list_users", "rows", "summary", "user_row"]


def access_type(provider: str, connection: dict[str, Any]) -> str | None:
    """How the mailbox is read: ``app_only`` (admin consent), ``impersonation`` (the org's Exchange service
    account), ``domain_wide`` (the org's Google service account), ``delegated`` (the person's consent), ``password``."""
    if not provider:
        return None
    if connection.get("app_only"):
        return "app_only"
    if connection.get("delegated"):
        # Google's domain-wide delegation: the org's access, not the person's consent.
        return "domain_wide"
    if connection.get("impersonation"):
        return "impersonation"
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


def rows(store: Store, uids: list[str]) -> list[dict[str, Any]]:
    """The users' rows, in the order given, from Redis now (one round trip; a user gone is left out)."""
    if not uids:
        return []
    with store.redis.pipeline(transaction=False) as pipe:
        for uid in uids:
            pipe.hmget(store.keys("user", uid), list(USER_FIELDS))
            pipe.hmget(store.keys("mailbox", uid), list(MAILBOX_FIELDS))
            pipe.llen(store.keys("quarantine", uid))
        values = pipe.execute()
    decode = lambda fields: [json.loads(v) if v is not None else None for v in fields]  # noqa: E731
    found: list[dict[str, Any]] = []
    for n, uid in enumerate(uids):
        user, mailbox, quarantined = values[3 * n:3 * n + 3]
        if not all(v is None for v in user):
            found.append(_row(uid, decode(user), decode(mailbox), int(quarantined)))
    return found


def user_row(store: Store, uid: str) -> dict[str, Any] | None:
    """One user's row, from Redis now (one round trip)."""
    found = rows(store, [uid])
    return found[0] if found else None


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


def list_users(store: Store, org_id: str, query: Query) -> dict[str, Any]:
    """A page of the org's users, filtered by state and provider, searched by name or address, sorted."""
    offset = (query.page - 1) * query.per_page
    args = (query.sort, query.descending, query.state, query.provider, offset, query.per_page)
    if query.search.strip():
        found = store.directory.search(org_id, query.search, *args)
    else:
        found = store.directory.page(org_id, *args)
    return {"total": found.total, "page": query.page, "per_page": query.per_page,
            "pages": max(1, -(-found.total // query.per_page)), "truncated": found.truncated,
            "users": rows(store, found.uids)}


def summary(store: Store, org_id: str, budget_percent: int, now: float | None = None) -> dict[str, Any]:
    """The org at a glance: mailboxes by state, runs and failures in 24 h, API use, the oldest success."""
    now = time.time() if now is None else now
    counts = store.directory.counts(org_id, now - STALE_SECONDS)
    states = {state.value: 0 for state in SyncState}
    states.update(counts["states"])
    runs, failures = store.runs.org_totals(org_id, now)
    org = store.orgs.get(org_id)
    usage = None
    if org.api_max:
        usage = {"used": org.api_used, "limit": org.api_max, "percent": round(100.0 * org.api_used / org.api_max, 1),
                 "budget_percent": budget_percent, "seen_at": org.api_seen_at or None}
    return {"org_id": org_id, "users": counts["users"], "mailboxes": states, "runs_24h": runs,
            "failures_24h": failures, "api_usage": usage, "oldest_last_success_at": counts["oldest_success"],
            "stale_24h": counts["stale"], "never_succeeded": counts["never_succeeded"],
            "backoff_until": org.api_backoff_until if org.api_backoff_until > now else None}
