"""A folder's sync position between runs: ``ews3|floor|ceiling|folder id|hierarchy|checked|horizon|state``.

SyncFolderItems cannot filter by date, so the first run's window travels with the sync state: the
lower bound (the floor) keeps applying afterwards, so a later change to a message older than the
first run's window (a flag, a move) is not reported as new mail, and a run that resumes a
half-finished first sync keeps filtering. The calendar's upper bound (the ceiling) only applies
until the first pass has caught up; meetings created later far in the future are reported when
they appear. The calendar's horizon is how far ahead meetings were read (the first pass's ceiling,
then rolled forward as days pass, see :mod:`.horizon`): meetings that were already there beyond it
are read once they come within the window.

The folder's EWS id, the hierarchy sync state the folder was last read through to the end, and
when that was (``checked``, epoch seconds) let a run skip a folder whose contents have not changed
(see :mod:`.hierarchy`). ``ews1`` cursors (without them) still read: the folder is simply read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from backend.connectors.mailbox import Folder, SyncWindow

CURSOR_PREFIX = "ews3"
_OLD_PREFIX = "ews1"
_V2_PREFIX = "ews2"  # without the horizon


@dataclass(frozen=True)
class Cursor:
    """A folder's position: the sync state, plus the window bounds that keep applying."""

    floor: datetime
    ceiling: datetime | None
    state: str
    folder_id: str = ""
    # The hierarchy state this folder was read through to its last page with (empty mid-folder).
    hierarchy: str = ""
    checked: int = 0
    # The calendar: meetings starting up to here were read (None: not known, an older cursor's).
    horizon: datetime | None = None

    def encode(self) -> str:
        """The cursor as the text the engine stores."""
        ceiling = str(int(self.ceiling.timestamp())) if self.ceiling else ""
        horizon = str(int(self.horizon.timestamp())) if self.horizon else ""
        return "|".join((CURSOR_PREFIX, str(int(self.floor.timestamp())), ceiling, self.folder_id, self.hierarchy,
                         str(self.checked), horizon, self.state))

    @staticmethod
    def decode(raw: str) -> Cursor | None:
        """A stored cursor, or None when it is not one of ours (the folder then resyncs)."""
        horizon_text = ""
        if raw.startswith(_OLD_PREFIX + "|"):
            parts = raw.split("|", 3)
            extra = ["", "", "0"]
        elif raw.startswith(_V2_PREFIX + "|"):
            parts = raw.split("|", 6)
            if len(parts) != 7:
                return None
            extra, parts = parts[3:6], [*parts[:3], parts[6]]
        else:
            parts = raw.split("|", 7)
            if len(parts) != 8:
                return None
            extra, horizon_text, parts = parts[3:6], parts[6], [*parts[:3], parts[7]]
        if len(parts) != 4 or parts[0] not in (CURSOR_PREFIX, _V2_PREFIX, _OLD_PREFIX) or not parts[3]:
            return None
        try:
            floor = datetime.fromtimestamp(int(parts[1]), UTC)
            ceiling = datetime.fromtimestamp(int(parts[2]), UTC) if parts[2] else None
            checked = int(extra[2] or 0)
            horizon = datetime.fromtimestamp(int(horizon_text), UTC) if horizon_text else None
        except ValueError:
            return None
        return Cursor(floor, ceiling, parts[3], extra[0], extra[1], checked, horizon)

    @staticmethod
    def fresh(folder: Folder, window: SyncWindow) -> Cursor:
        """The starting position for ``folder``: no sync state, bounded by ``window``."""
        if folder is Folder.CALENDAR:
            ceiling = window.events_to.astimezone(UTC)
            return Cursor(window.events_from.astimezone(UTC), ceiling, "", horizon=ceiling)
        return Cursor(window.mail_since.astimezone(UTC), None, "")
