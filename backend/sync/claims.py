"""Org-wide email claims: two colleagues' runs holding the same email must not both write it.

Salesforce does not keep ``EmailMessage.MessageIdentifier`` unique, so before a batch is looked up
and written, its Message-IDs are claimed for this run across the org (Redis, ``SET NX``). Emails a
colleague's run holds are set aside, waited for, and looked up again once that run released them:
by then it wrote them (duplicates here) or failed (ours to write). A write whose answer came too
late keeps its claims, held by no run, until Salesforce must have finished it (``IN_DOUBT_SECONDS``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from backend.connectors.mailbox import EmailItem, EventItem
from backend.errors import AnswerLate, Unavailable
from backend.store.claims import EmailClaimRepo

log = logging.getLogger(__name__)

# An email claim outlives the lookup and write of one batch (write_lease: longer when the writes
# may take longer); a run that dies leaves claims that expire after this (its own mailbox's rerun
# takes them over at once).
CLAIM_TTL_SECONDS = 20 * 60
# How long a run waits for a colleague's run to finish writing emails both hold, and how often it
# looks. Longer waits fail the run transiently: the job retries and the cursors stay put.
CLAIM_WAIT_SECONDS = 60.0
CLAIM_POLL_SECONDS = 0.25
# A write whose answer did not come in time (AnswerLate) may still be committing: Salesforce ends
# a REST call after 10 minutes at most ("API Timeout Limits"). Its emails stay claimed by no run
# (this mailbox's next one included) that long, or a batch's write lease when shorter, so nobody
# looks them up and writes them before the call has committed; then the next claimant's look-up
# sees what it wrote.
IN_DOUBT_SECONDS = 10 * 60
# Emails a write call carries with their sender relations (the no-split rule).
EMAILS_PER_WRITE_CALL = 400


def write_lease(batch_items: int, write_timeout: float) -> float:
    """The longest a batch's write may hold its claims: each of its Salesforce calls at its timeout.

    A batch is a write call per 400 emails, one more for relation rows sent again, and its look-up;
    it holds up to a quarter more than ``batch_items`` (a small remainder joins the last batch).
    """
    return (math.ceil(batch_items * 1.25 / EMAILS_PER_WRITE_CALL) + 2) * write_timeout


class ClaimWaitTimeout(Unavailable):
    """Another run kept the same emails too long; this run is retried (its batch's cursors did not move)."""

    code = "emails_claimed_elsewhere"


class ClaimedWrites:
    """Writes a batch under org-wide claims of its emails, for one run (``holder`` = "{mailbox}:{run}")."""

    def __init__(self, claims: EmailClaimRepo, org_id: str, holder: str, mailbox_id: str, lease: float) -> None:
        self.claims = claims
        self.org_id = org_id
        self.holder = holder
        self.mailbox_id = mailbox_id
        # A claim lives at least a batch's write (``lease``, see write_lease) from when it is taken.
        self.ttl = max(CLAIM_TTL_SECONDS, math.ceil(lease))
        # A claim taken ahead is trusted at its batch's write while a whole lease of its life is
        # left (it cannot expire before the write ends): claiming again is a script call of 800
        # keys a batch. Older, it is claimed again, which renews it.
        self.fresh_for = self.ttl - lease
        # How long a write whose answer came too late keeps its claims in doubt: Salesforce's own
        # limit, or the batch's whole write lease when that is shorter (writes configured to end
        # sooner are not waited for longer; the retry then looks up what the late call wrote).
        self.doubt_for = min(IN_DOUBT_SECONDS, math.ceil(lease))
        # Times this run waited for a colleague's run writing the same emails.
        self.waits = 0
        # Keys claimed ahead of their batch (claim_ahead) and when, released by their batch's write
        # or at the end of the run at the latest.
        self.ahead: dict[str, float] = {}

    def claim_ahead(self, keys: list[str]) -> set[str]:
        """Claim the next batch's email keys now (before they are looked up); returns those this run holds."""
        wanted = sorted(set(keys))
        held = self.claims.claim(self.org_id, wanted, self.holder, self.ttl)
        mine = {k for k in wanted if k not in held}
        now = time.monotonic()
        self.ahead.update(dict.fromkeys(mine, now))
        return mine

    def release_ahead(self) -> None:
        """Release what :meth:`claim_ahead` took and no write released yet (a run that stopped early)."""
        if self.ahead:
            self.claims.release(self.org_id, sorted(self.ahead), self.holder)
            self.ahead = {}

    def write(self, emails: list[EmailItem], events: list[EventItem], skip: set[str],
              write: Callable[[list[EmailItem], list[EventItem]], None],
              forget: Callable[[set[str]], None]) -> None:
        """Claim the emails' keys (but ``skip``), ``write`` what this run holds, release; wait for the rest.

        ``forget`` drops the CRM's cached answers for keys another run held, so they are asked again.
        """
        pending = emails
        first = True
        deadline = 0.0
        while True:
            keys = sorted({e.dedup_key for e in pending if e.dedup_key not in skip})
            fresh_since = time.monotonic() - self.fresh_for
            stale = [k for k in keys if k not in self.ahead or self.ahead[k] <= fresh_since]
            held = self.claims.claim(self.org_id, stale, self.holder, self.ttl)
            mine = [k for k in keys if k not in held]
            try:
                write([e for e in pending if e.dedup_key not in held], events if first else [])
            except AnswerLate:
                self.claims.hold_in_doubt(self.org_id, mine, self.holder, self.doubt_for)
                raise
            except BaseException:
                # Refused as a whole, failed before sending, or answered (a cut answer comes from a
                # call already carried out): what was written is there for the next look-up.
                self.claims.release(self.org_id, mine, self.holder)
                raise
            else:
                self.claims.release(self.org_id, mine, self.holder)
            finally:
                for key in mine:
                    self.ahead.pop(key, None)
            first = False
            if not held:
                return
            pending = [e for e in pending if e.dedup_key in held]
            if not deadline:
                deadline = time.monotonic() + CLAIM_WAIT_SECONDS
            self.waits += 1
            self.wait_for_release(sorted(held), deadline)
            # The other run may have written them: ask Salesforce again, not the run's cache.
            forget(held)

    def wait_for_release(self, keys: list[str], deadline: float) -> None:
        """Wait until another run released at least one of ``keys``; ClaimWaitTimeout past ``deadline``."""
        while True:
            still = self.claims.held_by_others(self.org_id, keys, self.holder)
            if len(still) < len(keys):
                return
            if time.monotonic() >= deadline:
                log.warning("emails held by another run too long mid=%s count=%d", self.mailbox_id, len(keys))
                raise ClaimWaitTimeout("A colleague's sync is logging some of the same emails; this run tries "
                                       "again shortly.")
            time.sleep(CLAIM_POLL_SECONDS)
