"""What a person may do with a mailbox their administrator mass-activated: the org policy decides Pause and Deactivate.

Only mailboxes whose connection says they came from mass activation (``connection["via"] ==
mass.VIA``) are concerned; a person's own connection (their login took over the mailbox, or they
connected it themselves) is theirs to pause and deactivate. Resume is never refused here: a
mass-activated mailbox paused (by the admin, or before the policy changed) may always run again.
"""

from __future__ import annotations

from backend.store.mailbox_record import SyncMailbox
from backend.store.orgs import OrgSettings
from backend.sync.mass import VIA

# The error code of a control the org policy refuses (403, the one error format).
LOCKED_BY_POLICY = "locked_by_policy"
# Each person's control and the OrgSettings value that allows it.
CONTROL_POLICY = {"pause": "mass_activated_may_pause", "deactivate": "mass_activated_may_deactivate"}
MESSAGES = {
    "pause": "Your administrator turned sync on for you and does not let people pause it. "
             "Ask your administrator if sync must stop.",
    "deactivate": "Your administrator turned sync on for you and does not let people deactivate it. "
                  "Ask your administrator if sync must stop.",
}


def is_mass_activated(mailbox: SyncMailbox) -> bool:
    """Whether the mailbox's connection came from an administrator's mass activation."""
    return mailbox.connection.get("via") == VIA


def locked_controls(org: OrgSettings, mailbox: SyncMailbox) -> dict[str, str]:
    """The person's controls the org policy refuses for this mailbox, each with the reason to show."""
    if not is_mass_activated(mailbox):
        return {}
    return {action: MESSAGES[action] for action, name in CONTROL_POLICY.items() if not getattr(org, name)}
