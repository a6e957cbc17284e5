"""The sync engine: one run for one sync mailbox, from loading its state to scheduling the next.

1. Load the mailbox, its person and org; stop if it is not running (or, for a background run, if
   the org's Salesforce API budget is backing off: :mod:`backend.sync.budget`).
2. Run it (:class:`backend.sync.run.MailboxRun`): read changes since the cursors page by page,
   filter, claim, match, write, save each batch's cursors after its writes.
3. Record counts, duration and calls (never content), clear or keep the error shown in the pane, and
   schedule the next background run (:mod:`backend.sync.cadence`: quiet runs stretch the interval).

Errors propagate (the RQ job classifies them); the run record is written either way. The engine is
built from the store, the settings and the outside clients; it looks nothing up by itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from backend.clients import Clients
from backend.config import Settings
from backend.connectors.crm import ApiLimitExceeded
from backend.errors import AuthRevoked, ConnectorError
from backend.observability import metrics
from backend.observability.logs import mailbox_hash
from backend.store import Store
from backend.store.mailboxes import SyncState
from backend.sync.budget import backoff_before_run, end_backoff, enter_backoff, iso
from backend.sync.cadence import schedule_next
from backend.sync.policy import effective_settings
from backend.sync.run import MailboxRun

log = logging.getLogger(__name__)

API_BUDGET_ERROR = {"code": "api_budget", "message": "Your organisation's Salesforce API use passed its budget; "
                    "background sync continues later.", "source": "salesforce"}


def deadline_passed(exc: BaseException) -> bool:
    """Whether the job's own deadline (RQ's ``JobTimeoutException``) is behind ``exc``.

    The signal that stops an overrunning job lands wherever the run is, often inside a connector
    whose boundary turns every failure into a domain error ("Exchange answered with an error"); the
    original stays the translated error's context, so the run still says it took too long.
    """
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        if type(current).__name__ == "JobTimeoutException":
            return True
        seen.append(current)
        current = current.__cause__ or current.__context__
    return False


def error_of(exc: BaseException, phase: str) -> dict[str, Any]:
    """The error a run record and the pane show for ``exc`` raised in ``phase`` ("mailbox" or "salesforce")."""
    if deadline_passed(exc):
        return {"code": "timeout", "message": "The run took too long and was stopped; the next run continues.",
                "source": phase}
    if isinstance(exc, AuthRevoked):
        where = "the mail server" if phase == "mailbox" else "Salesforce"
        return {"code": "mailbox_auth_failed" if phase == "mailbox" else "salesforce_auth_failed",
                "message": f"{where} no longer accepts the saved sign-in ({exc.message})", "source": phase}
    if isinstance(exc, ConnectorError):
        return {"code": exc.code, "message": exc.message, "source": phase}
    return {"code": "internal_error", "message": "Something went wrong on our side; the next run tries again.",
            "source": phase}


def run_record(run: MailboxRun, started: float, duration_ms: int, status: str,
               error: dict[str, Any] | None) -> dict[str, Any]:
    """The record of a run: times, trigger, status, counts, calls and error (never content)."""
    return {
        "id": run.run_id,
        "started_at": iso(started),
        "finished_at": iso(time.time()),
        "duration_ms": duration_ms,
        "trigger": run.trigger,
        "status": status,
        "stopped": run.stopped or None,
        "counts": run.counts.as_dict(),
        "salesforce_calls": run.salesforce_calls,
        "mailbox_calls": run.mailbox_calls,
        "error": error,
    }


def skipped(reason: str, provider: str) -> dict[str, Any]:
    """The answer of a job that ran no sync (counted by reason, so an operator sees paused or backed-off work)."""
    metrics.record_not_started(reason, provider)
    return {"status": "skipped", "reason": reason}


@dataclass(frozen=True)
class SyncEngine:
    """Runs sync for one mailbox at a time, with what it is given."""

    store: Store
    settings: Settings
    clients: Clients

    def run(self, mailbox_id: str, interactive: bool = False) -> dict[str, Any]:
        """Run sync once for a mailbox and return the run record (errors are recorded, then raised)."""
        store = self.store
        started = time.time()
        clock = time.monotonic()
        mailbox = store.mailboxes.get(mailbox_id)
        if mailbox is None:
            return skipped("unknown_mailbox", "")
        if mailbox.state is not SyncState.RUNNING:
            if mailbox.state is not SyncState.PAUSED:
                store.schedule.remove_unless_running(mailbox_id)
            return skipped(mailbox.state.value, mailbox.provider)
        user = store.users.get(mailbox.user_id)
        if user is None:
            # Looked at again an interval later: left as claimed, the clock would claim it at every
            # lease and its planned start would read as a lag that grows for ever.
            store.schedule.set_next(mailbox_id, started + self.settings.SYNC_INTERVAL_SECONDS)
            return skipped("unknown_user", mailbox.provider)
        org = store.orgs.get(mailbox.org_id)
        mailbox.settings = effective_settings(org, mailbox.settings)  # the org's locked values win
        if not interactive:
            until = backoff_before_run(store, self.settings, org, started)
            if until is not None:
                store.schedule.set_next(mailbox_id, until)
                return {**skipped("api_backoff", mailbox.provider), "until": iso(until)}

        run = MailboxRun(store, self.settings, self.clients, mailbox, user, org, interactive)
        error: dict[str, Any] | None = None
        failure: BaseException | None = None
        try:
            run.execute()
        except Exception as exc:
            failure = exc
            error = error_of(exc, run.phase)
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
            error = dict(API_BUDGET_ERROR)
        elif failure is None and not interactive and run.usage is not None:
            end_backoff(store, self.settings, org, run.usage)
        record = self.record(run, started, clock, failure, error)
        self.schedule(run, record, failure)
        if failure is not None:
            raise failure
        return record

    def record(self, run: MailboxRun, started: float, clock: float, failure: BaseException | None,
               error: dict[str, Any] | None) -> dict[str, Any]:
        """Write the run record (counts, calls, error: no content) and the mailbox's last-run state."""
        mid = run.mailbox.id
        status = "error" if failure is not None else ("partial" if run.stopped else "ok")
        record = run_record(run, started, int((time.monotonic() - clock) * 1000), status, error)
        self.store.runs.record(mid, record)
        metrics.record_run(status, run.mailbox.provider, record["duration_ms"] / 1000, record["counts"],
                           run.salesforce_calls)
        if run.usage is not None:
            metrics.record_api_usage(run.mailbox.org_id, run.usage.used, run.usage.limit)
        changes: dict[str, Any] = {"last_run": record}
        if failure is None and not run.stopped:
            # Every folder was read to its end: what arrived before this run started is handled.
            changes["caught_up_at"] = started
        self.store.mailboxes.update(mid, **changes)
        if failure is None:
            # A run that got through clears the failure streak and the error shown in the pane,
            # unless a disable during the run left its reason there.
            self.store.mailboxes.clear_error(mid)
        return record

    def schedule(self, run: MailboxRun, record: dict[str, Any], failure: BaseException | None) -> None:
        """Schedule the next background run and log the run's counts."""
        counts = record["counts"]
        mid = run.mailbox.id
        changed: bool | None = None if failure is not None else counts["read"] > 0
        if changed is False and run.interactive:
            # A "Sync now" that found nothing new says nothing about how busy the mailbox is: the
            # background interval neither stretches nor shrinks for it.
            changed = None
        schedule_next(self.store, self.settings, mid, changed, time.time())
        log.info("sync run mid=%s status=%s read=%d written=%d dup=%d filtered=%d quarantined=%d sf_calls=%d "
                 "mailbox_calls=%d ms=%d", mid, record["status"], counts["read"], counts["written"],
                 counts["duplicates"], counts["filtered"], counts["quarantined"], record["salesforce_calls"],
                 record["mailbox_calls"], record["duration_ms"],
                 extra={"event": "sync_run", "run_id": record["id"], "mailbox": mailbox_hash(mid),
                        "org_id": run.mailbox.org_id, "status": record["status"],
                        "counts": {k: counts[k] for k in metrics.ITEM_RESULTS}})
