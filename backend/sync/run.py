"""The state of one run while it goes: read pages, filter, write batch by batch, save cursors.

The order is DESIGN.md "The sync run": read changes since the cursors page by page; filter; claim
the batch's emails across the org (:mod:`backend.sync.claims`); match and look up in one batched
request; write what is new (:mod:`backend.sync.plan`), quarantine what Salesforce refused
(:mod:`backend.sync.refusals`); handle meetings the user organised that left the calendar; save the
batch's cursors only after its writes. Writes are deduplicated in Salesforce, so a rerun is harmless.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TypeVar

from backend.clients import Clients
from backend.config import Settings
from backend.connectors.crm import ApiUsage, Crm, WritePlan
from backend.connectors.mailbox import ChangePage, Deletion, EmailItem, EventItem, Folder, Mailbox, SyncWindow
from backend.errors import CursorExpired
from backend.store import Store
from backend.store.mailboxes import SyncMailbox, SyncState
from backend.store.orgs import OrgSettings
from backend.store.users import User
from backend.sync.claims import ClaimedWrites, write_lease
from backend.sync.collaborators import crm_for, mailbox_for
from backend.sync.counts import RunCounts
from backend.sync.filters import Filters, Reason
from backend.sync.match import addresses_to_match, lookup_batch
from backend.sync.plan import cancelled_action, plan_emails, plan_events, relation_changes
from backend.sync.prefetch import ReadAhead
from backend.sync.refusals import plan_keys, settle_refusals
from backend.sync.trail import TrailRecorder

log = logging.getLogger(__name__)
T = TypeVar("T")


def batches(items: list[T], size: int) -> list[list[T]]:
    """``items`` cut into batches of ``size``; a remainder under a quarter of ``size`` joins the last one."""
    chunks = [items[start:start + size] for start in range(0, len(items), size)]
    if len(chunks) > 1 and len(chunks[-1]) * 4 < size:
        chunks[-2].extend(chunks.pop())
    return chunks


def split_page(page: ChangePage, room: int) -> tuple[ChangePage, ChangePage]:
    """``page`` cut after ``room`` items: a head without cursor or deletions, and the rest, which keeps them."""
    emails, events = page.emails[:room], page.events[:max(0, room - len(page.emails))]
    head = ChangePage(folder=page.folder, emails=emails, events=events)
    tail = dataclasses.replace(page, emails=page.emails[len(emails):], events=page.events[len(events):])
    return head, tail


def page_weight(page: ChangePage) -> int:
    """What a page read ahead counts against the reader's bound: its changes, at least 1."""
    return max(1, len(page.emails) + len(page.events) + len(page.deletions))


class MailboxRun:
    """The state of one run while it goes."""

    def __init__(self, store: Store, settings: Settings, clients: Clients, mailbox: SyncMailbox, user: User,
                 org: OrgSettings, interactive: bool, trigger: str = "") -> None:
        self.store = store
        self.settings = settings
        self.clients = clients
        self.mailbox = mailbox
        self.user = user
        self.org = org
        self.interactive = interactive
        self.run_id = uuid.uuid4().hex[:12]
        self.counts = RunCounts()
        # Holder of this run's email claims: "{mailbox}:{run}".
        self.claims = ClaimedWrites(store.claims, org.org_id, f"{mailbox.id}:{self.run_id}", mailbox.id,
                                    write_lease(settings.SYNC_BATCH_ITEMS, settings.SALESFORCE_WRITE_TIMEOUT_SECONDS))
        self.crm: Crm | None = None
        self.connector: Mailbox | None = None
        self.stopped = ""
        self.phase = "mailbox"
        self.seen_keys: set[str] = set()
        # The next batch, read ahead: its look-ups ride in this batch's writes (see look_ahead).
        self.upcoming: list[ChangePage] = []
        # The rest of a page cut at a batch's end (read_batch).
        self.carry: list[ChangePage] = []
        # Meetings known to be in Salesforce this run (looked up or written), by key.
        self.logged_events: set[str] = set()
        self.usage: ApiUsage | None = None
        self.cancelled_action = cancelled_action(mailbox.settings)
        # What started the run, as its record and the trail say: "background", "interactive", "log_now".
        self.trigger = trigger or ("interactive" if interactive else "background")
        self.trail = TrailRecorder(store.trail, mailbox.id, self.trigger)
        # Only the connected mailbox's own addresses, as the provider reported them: the add-in
        # mailbox (a claim of the latest login, maybe another mailbox) is for the match at connect.
        self.filters = Filters.build(
            own_addresses=[mailbox.address, *mailbox.aliases],
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
        self.store.orgs.put(self.org.org_id, api_used=usage.used, api_max=usage.limit, api_seen_at=time.time())

    def crm_client(self) -> Crm:
        """The CRM connector, built on first need (a run with nothing to log never touches Salesforce)."""
        if self.crm is None:
            self.crm = crm_for(self.settings, self.store, self.clients, self.user, self._on_usage)
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
        """Items per batch (lookup and write): ``SYNC_BATCH_ITEMS``."""
        return self.settings.SYNC_BATCH_ITEMS

    def folders(self) -> tuple[Folder, ...]:
        """The folders to read, by the person's sync preferences."""
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
        backfill_days = int(self.mailbox.settings.get("backfill_days", self.settings.BACKFILL_DAYS))
        window = SyncWindow.starting(datetime.now(tz=UTC), backfill_days, self.mailbox.caught_up_at)
        self.phase = "mailbox"
        self.connector = mailbox_for(self.settings, self.store, self.clients, self.mailbox)
        # Read ahead: while a batch is written, the next one (the look-ahead's) waits read and the
        # one after it is on its way; at most a batch of items waits (plus a page). A page weighs
        # its changes, deletions too, and at least 1, so pages of nothing cannot pile up either.
        pages = ReadAhead(iter(self.connector.read_changes(cursors, window, folders)), limit=self.batch_items,
                          weight=page_weight, name=f"read-ahead:{self.run_id}")
        try:
            current = self.read_batch(pages)
            while current:
                # One batch ahead: its look-ups ride in the free query slots of this batch's writes.
                try:
                    upcoming = self.read_batch(pages)
                except Exception:
                    # What was read is written (and its cursors saved) before the mailbox's error goes up.
                    self.flush(current)
                    raise
                self.flush(current, upcoming)
                if self.stopped:
                    return
                current = upcoming
        except CursorExpired:
            # The connector could not resync by itself: start over from the window next time.
            # Dedup in Salesforce makes the re-read harmless.
            self.store.mailboxes.clear_cursors(self.mailbox.id)
            raise
        finally:
            pages.close()
            self.claims.release_ahead()

    def read_batch(self, pages: Iterator[ChangePage]) -> list[ChangePage]:
        """The next pages holding a batch of items (fewer at the end); empty once all are read.

        A page that would overfill the batch is cut: its first part (no cursor) ends this batch,
        the rest (with the cursor, saved once it is written) starts the next. So the write calls
        of a batch are full whatever the provider's page size (EWS answers 512 changes a page).
        """
        self.phase = "mailbox"
        batch: list[ChangePage] = []
        items = 0
        while items < self.batch_items:
            page = self.carry.pop() if self.carry else next(pages, None)
            if page is None:
                break
            room = self.batch_items - items
            if len(page.emails) + len(page.events) > room:
                head, tail = split_page(page, room)
                self.carry.append(tail)
                page = head
            batch.append(page)
            items += len(page.emails) + len(page.events)
        return batch

    def count_read(self, pages: list[ChangePage]) -> None:
        """Count what ``pages`` hold."""
        counts = self.counts
        emails = sum(len(p.emails) for p in pages)
        events = sum(len(p.events) for p in pages)
        counts.read_emails += emails
        counts.read_events += events
        counts.read += emails + events
        counts.deletions += sum(len(p.deletions) for p in pages)
        counts.resynced_pages += sum(1 for p in pages if p.resynced)
        counts.add_cuts(pages)
        unreadable = sum(p.unreadable for p in pages)
        if unreadable:
            counts.read += unreadable
            counts.filter_out(Reason.UNREADABLE, unreadable)

    def keep(self, pages: list[ChangePage]) -> list[EmailItem | EventItem]:
        """The items of ``pages`` the filters let through (of a meeting changed twice, the last version)."""
        return self.keep_items([e for p in pages for e in p.emails], [e for p in pages for e in p.events])

    def keep_items(self, emails: list[EmailItem], events: list[EventItem]) -> list[EmailItem | EventItem]:
        """The items the filters let through (of a meeting changed twice, the last version)."""
        kept: list[EmailItem | EventItem] = []
        for email in emails:
            reason = self.filters.email(email)
            if reason is not None:
                self.counts.filter_out(reason)
                self.trail.filtered(email, reason)
            else:
                kept.append(email)
        latest_events: dict[str, EventItem] = {}
        for event in events:
            reason = self.filters.event(event)
            if reason is not None:
                self.counts.filter_out(reason)
                self.trail.filtered(event, reason)
                continue
            if event.dedup_key in latest_events:
                self.counts.events_unchanged += 1
            latest_events[event.dedup_key] = event
        return [*kept, *latest_events.values()]

    def flush(self, pages: list[ChangePage], upcoming: list[ChangePage] | None = None) -> None:
        """Filter, match and write the items of ``pages``, then save their cursors.

        ``upcoming`` (the next batch, already read) is looked up along with these writes.
        """
        self.count_read(pages)
        items = self.keep(pages)
        self.upcoming = upcoming or []
        # A single page may hold more than a batch (EWS returns up to 512 changes): write it in
        # batches; its cursor is saved once all of them are written. A small remainder (pages
        # rarely end on the batch size: 2 x 512 = 1,024) rides with the last batch instead of
        # costing a lookup and a write call of its own.
        for chunk in batches(items, self.batch_items):
            if self.stopped:
                # Over the API budget mid-page: the rest waits, and so does the page's cursor (the
                # rerun reads the page again; what was written is found by dedup).
                self.trail.save()
                return
            self.phase = "salesforce"
            self.write([i for i in chunk if isinstance(i, EmailItem)], [i for i in chunk if isinstance(i, EventItem)])
        self.trail.save()
        # After the writes: a meeting created and removed within this batch is known by now.
        removed = [d for p in pages for d in p.deletions if d.folder is Folder.CALENDAR]
        if removed:
            self.phase = "salesforce"
            self.cancel_removed(removed)
        self.save_cursors(pages)

    def write(self, emails: list[EmailItem], events: list[EventItem]) -> None:
        """Claim the batch's emails across the org, match, skip what Salesforce holds, write the rest."""
        waits = self.claims.waits
        self.claims.write(emails, events, self.seen_keys, self.write_claimed,
                          lambda held: self.crm_client().forget(email_keys=held))
        self.counts.claim_waits += self.claims.waits - waits

    def write_claimed(self, emails: list[EmailItem], events: list[EventItem]) -> None:
        """Match, skip what Salesforce holds, write the rest (the emails' keys are claimed by this run)."""
        if not emails and not events:
            return
        lookup = lookup_batch(self.crm_client(), self.filters, emails, events)
        self.logged_events.update(lookup.existing_events)
        plan = WritePlan()
        plan_emails(plan, emails, lookup, self.filters, self.user.sf_user_id, self.seen_keys, self.counts)
        ours = self.store.meetings.added_relations(self.org.org_id, [e.dedup_key for e in events
                                                                   if e.dedup_key in lookup.existing_events])
        plan_events(plan, events, lookup, self.filters, self.cancelled_action, self.seen_keys, self.counts, ours)
        if emails and not self.crm_client().capabilities().enhanced_email:
            self.trail.email_object = "Task"
        self.trail.planned(emails, events, lookup, plan)
        if plan:
            self.look_ahead()
            self.apply(plan)
        self.remember_organised(events)

    def look_ahead(self) -> None:
        """Prepare the next batch's look-ups to ride in the next write (its emails claimed first, as for a write)."""
        pages, self.upcoming = self.upcoming, []
        if not pages:
            return
        emails = [e for p in pages for e in p.emails if self.filters.email(e) is None]
        events = [e for p in pages for e in p.events if self.filters.event(e) is None]
        # Claimed before they are asked about, so no colleague's run writes them between the
        # answer and this run's write of them; keys a colleague holds are asked about later.
        mine = self.claims.claim_ahead([e.dedup_key for e in emails if e.dedup_key not in self.seen_keys])
        emails = [e for e in emails if e.dedup_key in mine]
        self.crm_client().look_ahead(sorted(addresses_to_match(self.filters, emails, events)), sorted(mine),
                                     sorted({e.dedup_key for e in events}))

    def apply(self, plan: WritePlan) -> None:
        """Write a plan, count what it did and quarantine what Salesforce refused."""
        result = self.crm_client().write(plan)
        self.logged_events.update(result.written_keys & {e.key for e in plan.new_events})
        self.store.meetings.note_relations(self.org.org_id, *relation_changes(plan, result.written_keys))
        self.counts.add_writes(result)
        self.trail.written(plan, result)
        settle_refusals(self.store, self.mailbox.id, result, self.counts, plan_keys(plan))
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
        series: dict[str, list[tuple[str, float]]] = {}
        done: list[str] = []
        for event in events:
            organizer = event.organizer
            if organizer is None or not self.filters.is_own(organizer.email) or not event.remote_id:
                continue
            if event.is_cancelled:
                done.append(event.remote_id)
            elif event.dedup_key in self.logged_events:
                end = event.end or event.start
                organised[event.remote_id] = (event.dedup_key, end.timestamp() if end is not None else 0.0)
                if event.series_id:
                    series.setdefault(event.series_id, []).append(organised[event.remote_id])
        self.store.meetings.forget(self.mailbox.id, done)
        self.store.meetings.remember(self.mailbox.id, organised)
        self.store.meetings.remember_series(self.mailbox.id, series)

    def cancel_removed(self, removed: list[Deletion]) -> None:
        """Apply the cancelled-meetings preference to logged meetings the user organised that left the calendar.

        A meeting that already ended is left alone (removing a past meeting from one's calendar is
        tidying up, not a cancellation), and so is one the user did not organise (an invitee's copy
        going away cancels nothing).
        """
        removed_ids = sorted({d.remote_id for d in removed})
        logged = self.store.meetings.logged(self.mailbox.id, removed_ids)
        # A series deleted whole (Exchange names only its master): its logged occurrences.
        series = self.store.meetings.logged_series(self.mailbox.id, removed_ids)
        now = time.time()
        keys = sorted({key for key, end in [*logged.values(), *(o for s in series.values() for o in s)]
                       if end > now})
        if keys:
            crm = self.crm_client()
            crm.forget(event_keys=keys)
            existing = crm.existing_events(keys)
            plan = WritePlan(cancelled_events=[(existing[k], self.cancelled_action) for k in keys if k in existing])
            if plan:
                self.counts.matched += len(plan.cancelled_events)
                self.apply(plan)
        # Forgotten only once handled: a failure above leaves them for the rerun of this batch.
        self.store.meetings.forget(self.mailbox.id, list(logged))
        self.store.meetings.forget_series(self.mailbox.id, list(series))

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
