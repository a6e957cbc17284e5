"""Org policy over people's sync preferences: defaults people may change, or values locked by an admin.

The policy lives in :class:`~backend.store.orgs.OrgSettings`. A value is *locked* when its name is
in ``OrgSettings.locked``: the person's own choice is then ignored, the API refuses to change it
(``locked_by_admin``) and the run uses the org's value. An unlocked value is a default: it applies
until the person chooses otherwise (``settings["chosen"]`` names what they chose).
The console's ``PUT /api/admin/settings`` and ``flask org set`` both go through :func:`policy_changes`.
Two values (:data:`UNLOCKABLE`) are rules, not defaults: whether a person may pause or deactivate a
mailbox their administrator mass-activated (enforced by ``backend.sync.mass_controls``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from backend.store.orgs import OrgSettings
from backend.sync.settings import normalise_blocklist

# Every policy value, in the order the console shows them.
POLICY_NAMES = ("blocklist", "block_free_mail", "internal_domains", "sync_emails", "sync_events",
                "cancelled_events", "backfill_days", "admin_email", "mass_activated_may_pause",
                "mass_activated_may_deactivate")
# Rules about mass-activated mailboxes rather than defaults of a preference: nothing to lock.
UNLOCKABLE = ("mass_activated_may_pause", "mass_activated_may_deactivate")
# Policy values a person also has a preference for (Sync settings in the pane).
PERSONAL_NAMES = ("sync_emails", "sync_events", "cancelled_events", "blocklist")
_BUILT_IN = {"sync_emails": True, "sync_events": True, "cancelled_events": "mark", "blocklist": []}
MAX_BACKFILL_DAYS = 365


class PolicyError(ValueError):
    """A policy value that cannot be saved; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def chosen_by_person(personal: dict[str, Any]) -> set[str]:
    """The preferences the person chose themselves (before ``chosen`` was kept: those off the default)."""
    if isinstance(personal.get("chosen"), list):
        return {str(name) for name in personal["chosen"]}
    return {name for name in PERSONAL_NAMES if name in personal and personal[name] != _BUILT_IN[name]}


def effective_settings(org: OrgSettings, personal: dict[str, Any]) -> dict[str, Any]:
    """The preferences a run applies: locked values are the org's, defaults apply until the person chose.

    The org's blocklist always applies on top (the run adds ``OrgSettings.blocklist``); a locked
    blocklist drops the person's own entries. ``backfill_days`` is present when the org sets it.
    """
    result = dict(personal)
    chosen = chosen_by_person(personal)
    locked = set(org.locked)
    for name in ("sync_emails", "sync_events", "cancelled_events"):
        if name in locked or name not in chosen:
            result[name] = getattr(org, name)
    if "blocklist" in locked:
        result["blocklist"] = []
    if org.backfill_days >= 0:
        result["backfill_days"] = org.backfill_days
    return result


def person_view(org: OrgSettings) -> dict[str, Any]:
    """What the pane shows of the policy: which preferences are locked and the org's value of each."""
    locked = [name for name in PERSONAL_NAMES if name in org.locked]
    return {"locked": locked, "values": {name: getattr(org, name) for name in locked},
            "org_blocklist": list(org.blocklist)}


def policy_view(org: OrgSettings) -> dict[str, Any]:
    """The policy for the console: each value with whether it is locked."""
    data = asdict(org)
    return {name: {"value": data[name], "locked": name in org.locked} for name in POLICY_NAMES}


def _domains(value: Any, field: str) -> list[str]:
    try:
        domains = normalise_blocklist(value)
    except ValueError as exc:
        raise PolicyError(field, str(exc).replace("The blocklist", "The list").replace("blocklist", "list")) from None
    if any("@" in d for d in domains):
        raise PolicyError(field, "Internal domains are domains: give domains, not addresses.")
    return domains


def _value(name: str, value: Any) -> Any:
    """One policy value checked and normalised (PolicyError when wrong)."""
    if name == "blocklist":
        try:
            return normalise_blocklist(value)
        except ValueError as exc:
            raise PolicyError(name, str(exc)) from None
    if name == "internal_domains":
        return _domains(value, name)
    if name in ("block_free_mail", "sync_emails", "sync_events", *UNLOCKABLE):
        if not isinstance(value, bool):
            raise PolicyError(name, f"{name} must be true or false.")
        return value
    if name == "cancelled_events":
        if value not in ("mark", "delete"):
            raise PolicyError(name, "cancelled_events must be one of: mark, delete.")
        return value
    if name == "backfill_days":
        if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= MAX_BACKFILL_DAYS:
            raise PolicyError(name, f"backfill_days must be a whole number from 0 to {MAX_BACKFILL_DAYS} "
                                    "(-1 for the server's default).")
        return value
    if name == "admin_email":
        if not isinstance(value, str) or len(value) > 254:
            raise PolicyError(name, "admin_email must be an email address.")
        address = value.strip().lower()
        local, at, domain = address.partition("@")
        if address and (not at or not local or "." not in domain or " " in address or "@" in domain):
            raise PolicyError(name, f"{value!r} is not an email address.")
        return address
    raise PolicyError(name, f"Unknown policy value: {name}.")


def policy_changes(current: OrgSettings, body: dict[str, Any]) -> dict[str, Any]:
    """The OrgSettings changes for ``body``: ``{name: {"value": ..., "locked": bool}}`` or ``{name: value}``.

    Either form may give the value, the lock, or both; names not given keep theirs.
    """
    unknown = set(body) - set(POLICY_NAMES)
    if unknown:
        name = sorted(unknown)[0]
        raise PolicyError(name, f"Unknown policy value: {name}.")
    changes: dict[str, Any] = {}
    locked = set(current.locked)
    for name, raw in body.items():
        if isinstance(raw, dict):
            extra = set(raw) - {"value", "locked"}
            if extra or not raw:
                raise PolicyError(name, f"{name} takes value and locked.")
            if "value" in raw:
                changes[name] = _value(name, raw["value"])
            if "locked" in raw:
                if not isinstance(raw["locked"], bool):
                    raise PolicyError(name, f"{name}.locked must be true or false.")
                if raw["locked"] and name in UNLOCKABLE:
                    raise PolicyError(name, f"{name} is a rule for mass-activated mailboxes: it has no lock.")
                (locked.add if raw["locked"] else locked.discard)(name)
        else:
            changes[name] = _value(name, raw)
    # What the console sends whole (every value) changes only what differs.
    changes = {name: value for name, value in changes.items() if getattr(current, name) != value}
    if locked != set(current.locked):
        changes["locked"] = sorted(locked)
    return changes
