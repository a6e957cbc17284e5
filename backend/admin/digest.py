"""The admins' daily digest: which mailboxes of an org are disabled by an error or have not synced for 24 h.

Pure reading and composing; sending (and once a day) is ``backend/jobs/digest.py``'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from backend.admin.directory import STALE_SECONDS, rows
from backend.store import Store
from backend.store.mailboxes import SyncState

MAX_LISTED = 100


@dataclass(frozen=True)
class Digest:
    """What the admin is told about one org (empty lists: all is well, nothing is sent)."""

    org_id: str
    admin_email: str
    disabled: list[dict[str, Any]]
    stale: list[dict[str, Any]]

    @property
    def needed(self) -> bool:
        """True when there is something to tell."""
        return bool(self.admin_email and (self.disabled or self.stale))


def orgs_with_mailboxes(store: Store) -> list[str]:
    """Every org that has a sync mailbox (one round trip for the lot)."""
    mids = store.mailboxes.all_ids()
    return sorted({org for _, org in store.mailboxes.due_details(mids) if org}) if mids else []


def digest_for(store: Store, org_id: str, now: float | None = None) -> Digest:
    """The org's mailboxes disabled by an error, and those running without a successful run for 24 h."""
    now = time.time() if now is None else now
    disabled: list[dict[str, Any]] = []
    index = store.directory
    for row in rows(store, index.state_members(org_id, SyncState.DISABLED_ERROR.value)):
        if (row["error"] or {}).get("code") != "disabled_by_admin":
            disabled.append(row)
    stale: list[dict[str, Any]] = rows(store, index.stale_members(org_id, now - STALE_SECONDS))
    return Digest(org_id, store.orgs.get(org_id).admin_email, disabled, stale)


def _when(ts: object) -> str:
    if not isinstance(ts, (int, float)) or not ts:
        return "never"
    return datetime.fromtimestamp(float(ts), tz=UTC).strftime("%d %b %Y %H:%M UTC")


def digest_message(digest: Digest, console_url: str, mail_from: str) -> EmailMessage:
    """The digest email: counts, the list (names, mailboxes, why), the link to the console; no mail content."""
    lines = [
        "Hello,",
        "",
        f"Sidebar Sync needs your attention in your Salesforce org {digest.org_id}:",
        f"- {len(digest.disabled)} mailbox(es) disabled due to an error",
        f"- {len(digest.stale)} mailbox(es) without a successful run for 24 hours",
        "",
    ]
    if digest.disabled:
        lines.append("Disabled due to an error:")
        for row in digest.disabled[:MAX_LISTED]:
            error = row["error"] or {}
            lines.append(f"- {row['name'] or row['username']} <{row['mailbox'] or row['email']}>: "
                         f"{error.get('message') or error.get('code') or 'error'}")
        lines.append("")
    if digest.stale:
        lines.append("No successful run for 24 hours:")
        for row in digest.stale[:MAX_LISTED]:
            lines.append(f"- {row['name'] or row['username']} <{row['mailbox'] or row['email']}>: "
                         f"last successful run {_when(row['last_success_at'])}")
        lines.append("")
    hidden = max(0, len(digest.disabled) - MAX_LISTED) + max(0, len(digest.stale) - MAX_LISTED)
    if hidden:
        lines += [f"... and {hidden} more in the console.", ""]
    lines += [f"Open the console: {console_url}", "", "You get this email once a day while something needs you.",
              "", "- Sidebar Sync", ""]
    message = EmailMessage()
    count = len(digest.disabled) + len(digest.stale)
    message["Subject"] = f"Sidebar Sync: {count} mailbox(es) need attention"
    message["From"] = mail_from
    message["To"] = digest.admin_email
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=(mail_from.rpartition("@")[2] or None))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content("\n".join(lines))
    return message
