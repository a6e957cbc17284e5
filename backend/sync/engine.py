"""One sync run for one mailbox: the steps of DESIGN.md "The sync run", in order.

1. Load the mailbox's settings, cursors and credentials; stop if it is not running (or, for a
   background run, if the org's Salesforce API budget is backing off).
2. Take the time, then read changes since the cursors (``Mailbox.read_changes``), page by page.
3. Filter (blocklists, free mail, internal-only, private, drafts, events over 24 h).
4. Claim the batch's Message-IDs for this run across the org (Redis, ``SET NX``): Salesforce does
   not keep ``EmailMessage.MessageIdentifier`` unique, so a colleague's run holding the same
   email must not look it up and write it at the same moment. Then match every participant
   address against Contacts and Leads, and ask which Message-IDs and meetings Salesforce already
   holds, in one batched lookup.
5. Write what is new (EmailMessage or Task, Event with relations), add the sender relation to
   emails an earlier broken run left without one, update changed meetings, delete or mark
   cancelled ones (also meetings the user organised that left the calendar: the organiser
   cancelled them). Release the claims. Emails another run holds are looked up again once it is
   done (written by it: duplicates; not written: ours to write); a wait over a minute fails the
   run transiently, before the batch's cursors move. Writes are deduplicated in Salesforce, so a
   rerun is harmless.
6. Save the cursors of the batch's pages only after its writes, then record counts, duration and
   calls, and schedule the next run (quiet runs stretch the interval).

Errors propagate (the RQ job classifies them); the run record is written either way. Nothing of
the mail's content is stored: the run record holds counts and codes, the quarantine holds the
Message-ID, the object and Salesforce's reason.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from backend.config import Settings
from backend.connectors import MailboxContext, MailboxSecrets, open_mailbox
from backend.connectors.crm import ApiLimitExceeded, ApiUsage, Crm, SenderRepair, WritePlan
from backend.connectors.mailbox import ChangePage, Deletion, EmailItem, EventItem, Folder, Mailbox, SyncWindow
from backend.errors import AuthRevoked, ConnectorError, CursorExpired, Unavailable
from backend.extensions import services
from backend.store import Store
from backend.store.mailboxes import SyncMailbox, SyncState
from backend.store.orgs import OrgSettings
from backend.store.users import User
from backend.sync import mapping
from backend.sync.filters import Filters, Reason
from backend.sync.match import lookup_batch
from backend.sync.policy import effective_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

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
# Runs that may meet a record Salesforce refuses as "not now" (a locked row, a server error) before
# it is quarantined instead: RQ's retries plus a few scheduled runs.
MAX_TRANSIENT_ATTEMPTS = 8
# An email claim outlives the lookup and write of one batch (a few Composite calls of at most
# 180 s each); a run that dies leaves claims that expire after this (its own mailbox's rerun takes
# them over at once).
CLAIM_TTL_SECONDS = 15 * 60
# How long a run waits for a colleague's run to finish writing emails both hold, and how often it
# looks. Longer waits fail the run transiently: the job retries and the cursors stay put.
CLAIM_WAIT_SECONDS = 60.0
CLAIM_POLL_SECONDS = 0.25


class ClaimWaitTimeout(Unavailable):
    """Another run kept the same emails too long; this run is retried (its batch's cursors did not move)."""

    code = "emails_claimed_elsewhere"


def crm_for(settings: Settings, store: Store, user: User, on_usage: Any) -> Crm:
    """The CRM connector for a user's run (Salesforce, or ``clients.crm_factory`` when one is given)."""
    clients = services().clients
    if clients.crm_factory is not None:
        crm: Crm = clients.crm_factory(user, on_usage)
        return crm
    from backend.connectors.salesforce import SalesforceCredentials, open_crm

    credentials = SalesforceCredentials(clients.salesforce_oauth, store.secrets, user.id, user.login_url,
                                        user.instance_url)
    return open_crm(settings, credentials, user.org_id, user.sf_user_id, caps_cache=store.capabilities,
                    on_usage=on_usage)


def mailbox_for(settings: Settings, store: Store, mailbox: SyncMailbox) -> Mailbox:
    """The mailbox connector, built through the provider map (or ``clients.mailbox_factory`` when one is given)."""
    factory = services().clients.mailbox_factory
    context = MailboxContext(
        settings=settings,
        mailbox_id=mailbox.id,
        address=mailbox.address,
        connection=dict(mailbox.connection),
        # Write-backs (a refreshed token cache) are refused once the mailbox is deactivated or
        # reconnected while the run goes: Deactivate must not be undone by a run.
        secrets=MailboxSecrets(store.secrets, mailbox.id, guard=store.mailboxes, generation=mailbox.activated_at),
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
    # Sender relations added to emails an earlier, broken run left without one.
    relations_repaired: int = 0
    duplicates: int = 0
    quarantined: int = 0
    relations_quarantined: int = 0
    # Times this run waited for a colleague's run writing the same emails.
    claim_waits: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready values."""
        data = {k: v for k, v in self.__dict__.items() if k != "filtered_by"}
        data["filtered_by"] = dict(sorted(self.filtered_by.items()))
        return data

    def filter_out(self, reason: Reason, count: int = 1) -> None:
        """Count filtered items (one by default)."""
        self.filtered += count
        self.filtered_by[reason.value] += count


def batches(items: list[T], size: int) -> list[list[T]]:
    """``items`` cut into batches of ``size``; a remainder under a quarter of ``size`` joins the last one."""
    chunks = [items[start:start + size] for start in range(0, len(items), size)]
    if len(chunks) > 1 and len(chunks[-1]) * 4 < size:
        chunks[-2].extend(chunks.pop())
    return chunks


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
        self.run_id = uuid.uuid4().hex[:12]
        # Holder of this run's email claims: "{mailbox}:{run}".
        self.holder = f"{mailbox.id}:{self.run_id}"
        self.counts = RunCounts()
        self.crm: Crm | None = None
        self.connector: Mailbox | None = None
        self.stopped = ""
        self.phase = "mailbox"
        self.seen_keys: set[str] = set()
        # Meetings known to be in Salesforce this run (looked up or written), by key.
        self.logged_events: set[str] = set()
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
        window = SyncWindow.starting(datetime.now(tz=UTC), int(self.mailbox.settings.get(
            "backfill_days", self.settings.BACKFILL_DAYS)), self.mailbox.caught_up_at)
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
        unreadable = sum(p.unreadable for p in pages)
        if unreadable:
            counts.read += unreadable
            counts.filter_out(Reason.UNREADABLE, unreadable)
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
        # batches; its cursor is saved once all of them are written. A small remainder (pages
        # rarely end on the batch size: 2 x 512 = 1,024) rides with the last batch instead of
        # costing a lookup and a write call of its own.
        items: list[EmailItem | EventItem] = [*kept_emails, *kept_events]
        for chunk in batches(items, self.batch_items):
            if self.stopped:
                # Over the API budget mid-page: the rest waits, and so does the page's cursor (the
                # rerun reads the page again; what was written is found by dedup).
                return
            self.phase = "salesforce"
            self.write([i for i in chunk if isinstance(i, EmailItem)], [i for i in chunk if isinstance(i, EventItem)])
        # After the writes: a meeting created and removed within this batch is known by now.
        removed = [d for p in pages for d in p.deletions if d.folder is Folder.CALENDAR]
        if removed:
            self.phase = "salesforce"
            self.cancel_removed(removed)
        self.save_cursors(pages)

    def write(self, emails: list[EmailItem], events: list[EventItem]) -> None:
        """Claim the batch's emails, match, skip what Salesforce holds, write the rest, release.

        Emails a colleague's run holds are set aside, waited for, and looked up again once that run
        released them: by then it wrote them (duplicates here) or failed (ours to write).
        """
        pending = emails
        first = True
        deadline = 0.0
        while True:
            keys = sorted({e.dedup_key for e in pending if e.dedup_key not in self.seen_keys})
            held = self.store.claims.claim(self.org.org_id, keys, self.holder, CLAIM_TTL_SECONDS)
            mine = [k for k in keys if k not in held]
            try:
                self.write_claimed([e for e in pending if e.dedup_key not in held], events if first else [])
            finally:
                self.store.claims.release(self.org.org_id, mine, self.holder)
            first = False
            if not held:
                return
            pending = [e for e in pending if e.dedup_key in held]
            if not deadline:
                deadline = time.monotonic() + CLAIM_WAIT_SECONDS
            self.counts.claim_waits += 1
            self.wait_for_release(sorted(held), deadline)
            # The other run may have written them: ask Salesforce again, not the run's cache.
            self.crm_client().forget(email_keys=held)

    def wait_for_release(self, keys: list[str], deadline: float) -> None:
        """Wait until another run released at least one of ``keys``; ClaimWaitTimeout past ``deadline``."""
        while True:
            still = self.store.claims.held_by_others(self.org.org_id, keys, self.holder)
            if len(still) < len(keys):
                return
            if time.monotonic() >= deadline:
                log.warning("emails held by another run too long mid=%s count=%d", self.mailbox.id, len(keys))
                raise ClaimWaitTimeout("A colleague's sync is logging some of the same emails; this run tries "
                                       "again shortly.")
            time.sleep(CLAIM_POLL_SECONDS)

    def write_claimed(self, emails: list[EmailItem], events: list[EventItem]) -> None:
        """Match, skip what Salesforce holds, write the rest (the emails' keys are claimed by this run)."""
        if not emails and not events:
            return
        crm = self.crm_client()
        counts = self.counts
        lookup = lookup_batch(crm, self.filters, emails, events)
        self.logged_events.update(lookup.existing_events)
        plan = WritePlan()
        owner = self.user.sf_user_id
        for email in emails:
            key = email.dedup_key
            if key in lookup.existing_emails or key in self.seen_keys:
                counts.duplicates += 1
                if key in lookup.emails_without_sender and key not in self.seen_keys:
                    # Logged by an earlier run that broke before writing its sender relation.
                    draft = mapping.email_draft(email, lookup.people, self.filters, owner)
                    if draft is not None and draft.from_id:
                        plan.sender_repairs.append(SenderRepair(lookup.email_ids[key], draft))
                        self.seen_keys.add(key)
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
        if plan:
            self.apply(plan)
        self.remember_organised(events)

    def apply(self, plan: WritePlan) -> None:
        """Write a plan, count what it did and quarantine what Salesforce refused."""
        counts = self.counts
        result = self.crm_client().write(plan)
        new_events = {e.key for e in plan.new_events}
        self.logged_events.update(result.written_keys & new_events)
        counts.emails_written += result.emails_written
        counts.events_written += result.events_written
        counts.written += result.emails_written + result.events_written
        counts.events_updated += result.events_updated
        counts.events_cancelled += result.events_deleted + result.events_marked
        counts.events_unchanged += result.events_unchanged
        counts.relations_written += result.relations_written
        counts.relations_repaired += result.relations_repaired
        counts.duplicates += result.duplicates
        now = _iso(time.time())
        refused = list(result.rejected)
        if result.transient:
            # "Not now" is believed a few times; a record Salesforce refuses on every attempt is
            # quarantined like any other refusal, so one record cannot hold the mailbox back forever.
            attempts = self.store.retries.count(self.mailbox.id, [r.key for r in result.transient])
            exhausted = [r for r in result.transient if attempts[r.key] >= MAX_TRANSIENT_ATTEMPTS]
            result.transient = [r for r in result.transient if attempts[r.key] < MAX_TRANSIENT_ATTEMPTS]
            self.store.retries.forget(self.mailbox.id, [r.key for r in exhausted])
            refused += [dataclasses.replace(r, reason=f"{r.reason} (on {MAX_TRANSIENT_ATTEMPTS} attempts)")
                        for r in exhausted]
        entries = []
        for rejected in refused:
            if rejected.object.endswith("Relation"):
                counts.relations_quarantined += 1
            else:
                counts.quarantined += 1
            entries.append({"key": rejected.key, "object": rejected.object, "reason": rejected.reason, "at": now})
        self.store.quarantine.add(self.mailbox.id, entries)
        if result.transient:
            # Not quarantined and not lost: failing here (before the cursors move) has the job retried,
            # and the rerun finds what did commit through the usual dedup.
            first = result.transient[0].reason.split(":", 1)[0]
            log.warning("salesforce refused records for now mid=%s count=%d code=%s", self.mailbox.id,
                        len(result.transient), first)
            raise Unavailable(f"Salesforce could not save {len(result.transient)} record(s) just now ({first}); "
                              "sync tries again shortly.")
        if not self.interactive and self.usage is not None and \
                self.usage.percent >= self.settings.SF_API_BUDGET_PERCENT:
            # The rest waits: the org's other work in Salesforce matters more than our backlog.
            self.stopped = "api_budget"

    def remember_organised(self, events: list[EventItem]) -> None:
        """Remember (remote id -> key) the meetings of the batch this mailbox organised that Salesforce holds.

        When the organiser cancels a meeting it leaves their calendar (a deletion, not an update),
        and the deletion carries only the remote id: this map is how the run finds the Event.
        """
        organised: dict[str, tuple[str, float]] = {}
        done: list[str] = []
        for event in events:
            organizer = event.organizer
            if organizer is None or not self.filters.is_own(organizer.email) or not event.remote_id:
                continue
            key = event.dedup_key
            if event.is_cancelled:
                done.append(event.remote_id)
            elif key in self.logged_events:
                end = event.end or event.start
                organised[event.remote_id] = (key, end.timestamp() if end is not None else 0.0)
        self.store.meetings.forget(self.mailbox.id, done)
        self.store.meetings.remember(self.mailbox.id, organised)

    def cancel_removed(self, removed: list[Deletion]) -> None:
        """Apply the cancelled-meetings setting to logged meetings the user organised that left the calendar.

        A meeting that already ended is left alone (removing a past meeting from one's calendar is
        tidying up, not a cancellation), and so is one the user did not organise (an invitee's copy
        going away cancels nothing).
        """
        remote_ids = sorted({d.remote_id for d in removed})
        logged = self.store.meetings.logged(self.mailbox.id, remote_ids)
        now = time.time()
        keys = sorted({key for key, end in logged.values() if end > now})
        if keys:
            crm = self.crm_client()
            crm.forget(event_keys=keys)
            existing = crm.existing_events(keys)
            action = "delete" if str(self.mailbox.settings.get("cancelled_events") or "mark") == "delete" else "mark"
            plan = WritePlan(cancelled_events=[(existing[k], action) for k in keys if k in existing])
            if plan:
                self.counts.matched += len(plan.cancelled_events)
                self.apply(plan)
        # Forgotten only once handled: a failure above leaves them for the rerun of this batch.
        self.store.meetings.forget(self.mailbox.id, list(logged))

    def save_cursors(self, pages: list[ChangePage]) -> None:
        """Save the cursor of the last page of each folder in ``pages`` (their writes are done)."""
        latest: dict[str, str] = {}
        for page in pages:
            if page.cursor:
                latest[page.folder.value] = page.cursor
        if latest and not self.store.mailboxes.save_cursors_if_connected(self.mailbox.id, latest):
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
    mailbox.settings = effective_settings(org, mailbox.settings)  # the org's locked values win
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
        "id": run.run_id,
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
        if not run.stopped:
            # Every folder was read to its end: what arrived before this run started is handled.
            changes["caught_up_at"] = started
    store.mailboxes.update(mailbox_id, **changes)
    schedule_next(store, settings, mailbox_id, None if failure is not None else counts["read"] > 0, finished)
    log.info("sync run mid=%s status=%s read=%d written=%d dup=%d filtered=%d quarantined=%d sf_calls=%d "
             "mailbox_calls=%d ms=%d", mailbox_id, record["status"], counts["read"], counts["written"],
             counts["duplicates"], counts["filtered"], counts["quarantined"], record["salesforce_calls"],
             record["mailbox_calls"], record["duration_ms"])
    if failure is not None:
        raise failure
    return record
