"""One sync run for one mailbox: the steps of DESIGN.md "The sync run", in order.

1. Load the mailbox's settings, cursors and credentials; stop if it is not running (or, for a
   background run, if the org's Salesforce API budget is backing off).
2. Take the time, then read changes since the cursors (``Mailbox.read_changes``), page by page.
3. Filter (blocklists, free mail, internal-only, private, drafts, events over 24 h).
4. Match every participant address of a batch of pages against Contacts and Leads, and ask which
   Message-IDs and meetings Salesforce already holds, in one batched lookup.
5. Write what is new (EmailMessage or Task, Event with relations), update changed meetings,
   delete or mark cancelled ones. Writes are deduplicated in Salesforce, so a rerun is harmless.
6. Save the cursors of the batch's pages only after its writes, then record counts, duration and
   calls, and schedule the next run (quiet runs stretch the interval).

Errors propagate (the RQ job classifies them); the run record is written either way. Nothing of
the mail's content is stored: the run record holds counts and codes, the quarantine holds the
Message-ID, the object and Salesforce's reason.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backend.config import Settings
from backend.connectors import MailboxContext, MailboxSecrets, open_mailbox
from backend.connectors.crm import ApiLimitExceeded, ApiUsage, Crm, WritePlan
from backend.connectors.errors import AuthRevoked, ConnectorError, CursorExpired
from backend.connectors.mailbox import ChangePage, EmailItem, EventItem, Folder, Mailbox, SyncWindow
from backend.extensions import services
from backend.store import Store
from backend.store.mailboxes import SyncMailbox, SyncState
from backend.store.misc import OrgSettings
from backend.store.users import User
from backend.sync import mapping
from backend.sync.filters import Filters, Reason
from backend.sync.match import lookup_batch

log = logging.getLogger(__name__)

# Items written per batch (SYNC_BATCH_ITEMS, default 1,000): enough to fill Composite requests of
# five collections of 200, few enough to keep a run's memory flat (bodies are bounded by the
# connector). None here means "from the settings"; tests may pin it.
BATCH_ITEMS: int | None = None
# Background runs for an org back off this long when its API usage passes the budget (30 min,
# then 2.5 h, 4.5 h, 6.5 h), as the reference product does; "Sync now" is never held back.
BACKOFF_STEPS_SECONDS = (1800, 9000, 16200, 23400)
# A usage reading older than this does not stop a run before it starts.
USAGE_FRESH_SECONDS = 30 * 60
# Quiet runs in a row after which the interval doubles, then quadruples (30 -> 60 -> 120 min).
QUIET_RUNS_DOUBLE = 2
QUIET_RUNS_QUADRUPLE = 4


def crm_for(settings: Settings, store: Store, user: User, on_usage: Any) -> Crm:
    """The CRM connector for a user's run (Salesforce; replaceable through ``services().clients``)."""
    factory = services().clients.get("crm_factory")
    if factory is not None:
        crm: Crm = factory(user, on_usage)
        return crm
    from backend.auth.salesforce import credentials_for
    from backend.connectors.salesforce import open_crm
    from backend.store.runs import CapabilityCacheAdapter

    return open_crm(settings, credentials_for(user), user.org_id, user.sf_user_id,
                    caps_cache=CapabilityCacheAdapter(store.runs), on_usage=on_usage)


def mailbox_for(settings: Settings, store: Store, mailbox: SyncMailbox) -> Mailbox:
    """The mailbox connector, built through the provider map (replaceable through ``services().clients``)."""
    factory = services().clients.get("mailbox_factory")
    context = MailboxContext(
        settings=settings,
        mailbox_id=mailbox.id,
        address=mailbox.address,
        connection=dict(mailbox.connection),
        secrets=MailboxSecrets(store.secrets, mailbox.id),
    )
    if factory is not None:
        connector: Mailbox = factory(mailbox.provider, context)
        return connector
    return open_mailbox(mailbox.provider, context)


@dataclass
class RunCounts:
    """What a run did (no content)."""

    read: int = 0
    read_emails: int = 0
    read_events: int = 0
    deletions: int = 0
    # Pages the connector re-read from the window because a cursor expired (dedup absorbs them).
    resynced_pages: int = 0
    filtered: int = 0
    filtered_by: Counter[str] = field(default_factory=Counter)
    matched: int = 0
    written: int = 0
    emails_written: int = 0
    events_written: int = 0
    events_updated: int = 0
    events_cancelled: int = 0
    events_unchanged: int = 0
    relations_written: int = 0
    duplicates: int = 0
    quarantined: int = 0
    relations_quarantined: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready values."""
        data = {k: v for k, v in self.__dict__.items() if k != "filtered_by"}
        data["filtered_by"] = dict(sorted(self.filtered_by.items()))
        return data

    def filter_out(self, reason: Reason) -> None:
        """Count one filtered item."""
        self.filtered += 1
        self.filtered_by[reason.value] += 1


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


class MailboxRun:
    """The state of one run while it goes."""

    def __init__(self, store: Store, settings: Settings, mailbox: SyncMailbox, user: User, org: OrgSettings,
                 interactive: bool) -> None:
        self.store = store
        self.settings = settings
        self.mailbox = mailbox
        self.user = user
        self.org = org
        self.interactive = interactive
        self.counts = RunCounts()
        self.crm: Crm | None = None
        self.connector: Mailbox | None = None
        self.stopped = ""
        self.phase = "mailbox"
        self.seen_keys: set[str] = set()
        self.usage: ApiUsage | None = None
        self.filters = Filters.build(
            own_addresses=[mailbox.address, *mailbox.aliases, user.addin_mailbox],
            org_internal_domains=org.internal_domains,
            org_blocklist=org.blocklist,
            user_blocklist=mailbox.settings.get("blocklist") or [],
            block_free_mail=org.block_free_mail,
            sync_emails=bool(mailbox.settings.get("sync_emails", True)),
            sync_events=bool(mailbox.settings.get("sync_events", True)),
        )

    # -- collaborators ----------------------------------------------------------------------------
    def _on_usage(self, usage: ApiUsage) -> None:
        self.usage = usage
        self.store.orgs.update(self.org.org_id, api_used=usage.used, api_max=usage.limit, api_seen_at=time.time())

    def crm_client(self) -> Crm:
        """The CRM connector, built on first need (a run with nothing to log never touches Salesforce)."""
        if self.crm is None:
            self.crm = crm_for(self.settings, self.store, self.user, self._on_usage)
        return self.crm

    @property
    def salesforce_calls(self) -> int:
        """Salesforce API calls made so far."""
        return self.crm.calls if self.crm is not None else 0

    @property
    def mailbox_calls(self) -> int:
        """Mail server requests made so far."""
        return self.connector.calls if self.connector is not None else 0

    # -- the run ----------------------------------------------------------------------------------
    @property
    def batch_items(self) -> int:
        """Items per batch (lookup and write)."""
        return BATCH_ITEMS or self.settings.SYNC_BATCH_ITEMS

    def folders(self) -> tuple[Folder, ...]:
        """The folders to read, by the user's settings."""
        folders: list[Folder] = []
        if self.filters.sync_emails:
            folders += [Folder.INBOX, Folder.SENT]
        if self.filters.sync_events:
            folders.append(Folder.CALENDAR)
        return tuple(folders)

    def execute(self) -> None:
        """Read, filter, match, write, save cursors: batch by batch."""
        folders = self.folders()
        if not folders:
            return
        cursors = self.store.mailboxes.cursors(self.mailbox.id)
        window = SyncWindow.starting(datetime.now(tz=UTC), self.settings.BACKFILL_DAYS)
        self.phase = "mailbox"
        self.connector = mailbox_for(self.settings, self.store, self.mailbox)
        pending: list[ChangePage] = []
        items = 0
        batch_items = self.batch_items
        try:
            for page in self.connector.read_changes(cursors, window, folders):
                pending.append(page)
                items += len(page.emails) + len(page.events)
                if items >= batch_items:
                    self.flush(pending)
                    pending, items = [], 0
                    if self.stopped:
                        return
                self.phase = "mailbox"
            if pending:
                self.flush(pending)
        except CursorExpired:
            # The connector could not resync by itself: start over from the window next time.
            # Dedup in Salesforce makes the re-read harmless.
            self.store.mailboxes.clear_cursors(self.mailbox.id)
            raise

    def flush(self, pages: list[ChangePage]) -> None:
        """Filter, match and write the items of ``pages``, then save their cursors."""
        emails: list[EmailItem] = [e for p in pages for e in p.emails]
        events: list[EventItem] = [e for p in pages for e in p.events]
        counts = self.counts
        counts.read_emails += len(emails)
        counts.read_events += len(events)
        counts.read += len(emails) + len(events)
        counts.deletions += sum(len(p.deletions) for p in pages)
        counts.resynced_pages += sum(1 for p in pages if p.resynced)
        kept_emails: list[EmailItem] = []
        for email in emails:
            reason = self.filters.email(email)
            if reason is not None:
                counts.filter_out(reason)
            else:
                kept_emails.append(email)
        # The same meeting can change twice in one batch: the last version wins.
        latest_events: dict[str, EventItem] = {}
        for event in events:
            reason = self.filters.event(event)
            if reason is not None:
                counts.filter_out(reason)
                continue
            key = event.dedup_key
            if key in latest_events:
                counts.events_unchanged += 1
            latest_events[key] = event
        kept_events = list(latest_events.values())
        # A single page may hold more than a batch (EWS returns up to 512 changes): write it in
        # batches; its cursor is saved once all of them are written.
        size = self.batch_items
        items: list[EmailItem | EventItem] = [*kept_emails, *kept_events]
        for start in range(0, len(items), size):
            chunk = items[start:start + size]
            self.phase = "salesforce"
            self.write([i for i in chunk if isinstance(i, EmailItem)], [i for i in chunk if isinstance(i, EventItem)])
        self.save_cursors(pages)

    def write(self, emails: list[EmailItem], events: list[EventItem]) -> None:
        """Match, skip what Salesforce holds, write the rest."""
        crm = self.crm_client()
        counts = self.counts
        lookup = lookup_batch(crm, self.filters, emails, events)
        plan = WritePlan()
        owner = self.user.sf_user_id
        for email in emails:
            key = email.dedup_key
            if key in lookup.existing_emails or key in self.seen_keys:
                counts.duplicates += 1
                continue
            draft = mapping.email_draft(email, lookup.people, self.filters, owner)
            if draft is None:
                counts.filter_out(Reason.NO_MATCH)
                continue
            self.seen_keys.add(key)
            counts.matched += 1
            plan.emails.append(draft)
        action = str(self.mailbox.settings.get("cancelled_events") or "mark")
        for event in events:
            key = event.dedup_key
            existing = lookup.existing_events.get(key)
            if event.is_cancelled:
                if existing is None:
                    counts.filter_out(Reason.CANCELLED)
                else:
                    counts.matched += 1
                    plan.cancelled_events.append((existing, "delete" if action == "delete" else "mark"))
                continue
            if existing is None and key in self.seen_keys:
                counts.duplicates += 1
                continue
            event_draft = mapping.event_draft(event, lookup.people, self.filters,
                                              allow_unmatched=existing is not None)
            if event_draft is None:
                counts.filter_out(Reason.NO_MATCH)
                continue
            counts.matched += 1
            self.seen_keys.add(key)
            if existing is None:
                plan.new_events.append(event_draft)
            else:
                plan.changed_events.append((existing, event_draft))
        if not plan:
            return
        result = crm.write(plan)
        counts.emails_written += result.emails_written
        counts.events_written += result.events_written
        counts.written += result.emails_written + result.events_written
        counts.events_updated += result.events_updated
        counts.events_cancelled += result.events_deleted + result.events_marked
        counts.events_unchanged += result.events_unchanged
        counts.relations_written += result.relations_written
        counts.duplicates += result.duplicates
        now = _iso(time.time())
        entries = []
        for rejected in result.rejected:
            if rejected.object.endswith("Relation"):
                counts.relations_quarantined += 1
            else:
                counts.quarantined += 1
            entries.append({"key": rejected.key, "object": rejected.object, "reason": rejected.reason, "at": now})
        self.store.runs.quarantine(self.mailbox.id, entries)
        if not self.interactive and self.usage is not None and \
                self.usage.percent >= self.settings.SF_API_BUDGET_PERCENT:
            # The rest waits: the org's other work in Salesforce matters more than our backlog.
            self.stopped = "api_budget"

    def save_cursors(self, pages: list[ChangePage]) -> None:
        """Save the cursor of the last page of each folder in ``pages`` (their writes are done)."""
        latest: dict[str, str] = {}
        for page in pages:
            if page.cursor:
                latest[page.folder.value] = page.cursor
        if latest and not self.store.runs.save_cursors_if_connected(self.mailbox.id, latest):
            self.stopped = "deactivated"
            return
        state = self.store.mailboxes.get(self.mailbox.id)
        if state is None or state.state is not SyncState.RUNNING:
            self.stopped = "paused" if state is not None and state.state is SyncState.PAUSED else "stopped"

    def close(self) -> None:
        """Release the connectors."""
        for closer in (self.connector, self.crm):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # noqa: BLE001 - closing must not hide the run's own outcome
                    log.warning("closing a connector failed mid=%s", self.mailbox.id)


def enter_backoff(store: Store, org_id: str, now: float | None = None) -> float:
    """Back off background runs of an org one step further; returns the time they resume."""
    now = time.time() if now is None else now
    org = store.orgs.get(org_id)
    if org.api_backoff_until > now:
        return org.api_backoff_until
    level = min(org.api_backoff_level + 1, len(BACKOFF_STEPS_SECONDS))
    until = now + BACKOFF_STEPS_SECONDS[level - 1]
    store.orgs.update(org_id, api_backoff_level=level, api_backoff_until=until)
    log.warning("salesforce api budget: background sync backs off org=%s level=%d until=%s", org_id, level,
                _iso(until))
    return until


def _over_budget(org: OrgSettings, settings: Settings, now: float) -> bool:
    if not org.api_max or now - org.api_seen_at > USAGE_FRESH_SECONDS:
        return False
    return 100.0 * org.api_used / org.api_max >= settings.SF_API_BUDGET_PERCENT


def _error_of(exc: BaseException, phase: str) -> dict[str, Any]:
    if isinstance(exc, AuthRevoked):
        where = "the mail server" if phase == "mailbox" else "Salesforce"
        return {"code": "mailbox_auth_failed" if phase == "mailbox" else "salesforce_auth_failed",
                "message": f"{where} no longer accepts the saved sign-in ({exc.message})", "source": phase}
    if isinstance(exc, ConnectorError):
        return {"code": exc.code, "message": exc.message, "source": phase}
    name = type(exc).__name__
    if name == "JobTimeoutException":
        return {"code": "timeout", "message": "The run took too long and was stopped; the next run continues.",
                "source": phase}
    return {"code": "internal_error", "message": "Something went wrong on our side; the next run tries again.",
            "source": phase}


def schedule_next(store: Store, settings: Settings, mid: str, changed: bool | None, now: float) -> float | None:
    """Set the next background run: the interval stretches after quiet runs; None when not running.

    ``changed`` is None after a failed run (neither quiet nor busy: the interval stays).
    """
    mailbox = store.mailboxes.get(mid)
    if mailbox is None or mailbox.state is not SyncState.RUNNING:
        store.schedule.remove(mid)
        return None
    base = settings.SYNC_INTERVAL_SECONDS
    quiet = mailbox.quiet_runs
    if changed is True:
        quiet = 0
    elif changed is False:
        quiet += 1
    interval = base * (4 if quiet >= QUIET_RUNS_QUADRUPLE else 2 if quiet >= QUIET_RUNS_DOUBLE else 1)
    when = now + interval
    org = store.orgs.get(mailbox.org_id)
    if org.api_backoff_until > when:
        when = org.api_backoff_until
    store.mailboxes.update(mid, quiet_runs=quiet, interval_seconds=interval)
    store.schedule.set_next(mid, when)
    return when


def run_mailbox(mailbox_id: str, interactive: bool = False) -> dict[str, Any]:
    """Run sync once for a mailbox and return the run record (errors are recorded, then raised)."""
    svc = services()
    store, settings = svc.store, svc.settings
    started = time.time()
    clock = time.monotonic()
    mailbox = store.mailboxes.get(mailbox_id)
    if mailbox is None:
        return {"status": "skipped", "reason": "unknown_mailbox"}
    if mailbox.state is not SyncState.RUNNING:
        if mailbox.state is not SyncState.PAUSED:
            store.schedule.remove(mailbox_id)
        return {"status": "skipped", "reason": mailbox.state.value}
    user = store.users.get(mailbox.user_id)
    if user is None:
        return {"status": "skipped", "reason": "unknown_user"}
    org = store.orgs.get(mailbox.org_id)
    if not interactive:
        if org.api_backoff_until > started:
            store.schedule.set_next(mailbox_id, org.api_backoff_until)
            return {"status": "skipped", "reason": "api_backoff", "until": _iso(org.api_backoff_until)}
        if _over_budget(org, settings, started):
            until = enter_backoff(store, org.org_id, started)
            store.schedule.set_next(mailbox_id, until)
            return {"status": "skipped", "reason": "api_backoff", "until": _iso(until)}

    run = MailboxRun(store, settings, mailbox, user, org, interactive)
    error: dict[str, Any] | None = None
    failure: BaseException | None = None
    try:
        run.execute()
    except Exception as exc:
        failure = exc
        error = _error_of(exc, run.phase)
        if isinstance(exc, ApiLimitExceeded):
            enter_backoff(store, org.org_id)
        if isinstance(exc, ConnectorError):
            # Tell the job where the error came from (mail server or Salesforce) without a wrapper.
            exc.source = run.phase  # type: ignore[attr-defined]
        log.warning("sync run failed mid=%s phase=%s code=%s", mailbox_id, run.phase, error["code"],
                    exc_info=not isinstance(exc, ConnectorError))
    finally:
        run.close()
    if run.stopped == "api_budget":
        enter_backoff(store, org.org_id)
        error = {"code": "api_budget", "message": "Your organisation's Salesforce API use passed its budget; "
                 "background sync continues later.", "source": "salesforce"}
    elif failure is None and not interactive and run.usage is not None and org.api_backoff_level:
        # Usage is back under the budget: the next backoff starts from the first step again.
        store.orgs.update(org.org_id, api_backoff_level=0, api_backoff_until=0.0)
    finished = time.time()
    counts = run.counts.as_dict()
    record: dict[str, Any] = {
        "id": uuid.uuid4().hex[:12],
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "duration_ms": int((time.monotonic() - clock) * 1000),
        "trigger": "interactive" if interactive else "background",
        "status": "error" if failure is not None else ("partial" if run.stopped else "ok"),
        "stopped": run.stopped or None,
        "counts": counts,
        "salesforce_calls": run.salesforce_calls,
        "mailbox_calls": run.mailbox_calls,
        "error": error,
    }
    store.runs.record(mailbox_id, record)
    changes: dict[str, Any] = {"last_run": record}
    if failure is None:
        # A run that got through clears the failure streak and the error shown in the pane.
        changes.update(auth_failures=0, error=None)
    store.mailboxes.update(mailbox_id, **changes)
    schedule_next(store, settings, mailbox_id, None if failure is not None else counts["read"] > 0, finished)
    log.info("sync run mid=%s status=%s read=%d written=%d dup=%d filtered=%d quarantined=%d sf_calls=%d "
             "mailbox_calls=%d ms=%d", mailbox_id, record["status"], counts["read"], counts["written"],
             counts["duplicates"], counts["filtered"], counts["quarantined"], record["salesforce_calls"],
             record["mailbox_calls"], record["duration_ms"])
    if failure is not None:
        raise failure
    return record
