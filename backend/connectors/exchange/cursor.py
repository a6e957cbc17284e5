"""A folder's sync position as stored between runs: ``ews2|floor|ceiling|folder id|hierarchy|checked|state``.

SyncFolderItems cannot filter by date, so the first run's window travels with the sync state: the
lower bound (the floor) keeps applying afterwards, so a later change to a message older than the
first run's window (a flag, a move) is not reported as new mail, and a run that resumes a
half-finished first sync keeps filtering. The calendar's upper bound (the ceiling) only applies
until the first pass has caught up; meetings created later far in the future are reported when
they appear.

The folder's EWS id, the hierarchy sync state the folder was last read through to the end, and
when that was (``checked``, epoch seconds) let a run skip a folder whose contents have not changed
(see :mod:`.hierarchy`). ``ews1`` cursors (without them) still read: the folder is simply read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from backend.connectors.mailbox import Folder, SyncWindow

CURSOR_PREFIX = "ews2"
_OLD_PREFIX = "ews1"


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

    def encode(self) -> str:
        """The cursor as the text the engine stores."""
        ceiling = str(int(self.ceiling.timestamp())) if self.ceiling else ""
        return "|".join((CURSOR_PREFIX, str(int(self.floor.timestamp())), ceiling, self.folder_id, self.hierarchy,
                         str(self.checked), self.state))

    @staticmethod
    def decode(raw: str) -> Cursor | None:
        """A stored cursor, or None when it is not one of ours (the folder then resyncs)."""
        if raw.startswith(_OLD_PREFIX + "|"):
            parts = raw.split("|", 3)
            extra = ["", "", "0"]
        else:
            parts = raw.split("|", 6)
            if len(parts) != 7:
                return None
            extra, parts = parts[3:6], [*parts[:3], parts[6]]
        if len(parts) != 4 or parts[0] not in (CURSOR_PREFIX, _OLD_PREFIX) or not parts[3]:
            return None
        try:
            floor = datetime.fromtimestamp(int(parts[1]), UTC)
            ceiling = datetime.fromtimestamp(int(parts[2]), UTC) if parts[2] else None
            checked = int(extra[2] or 0)
        except ValueError:
            return None
        return Cursor(floor, ceiling, parts[3], extra[0], extra[1], checked)

    @staticmethod
    def fresh(folder: Folder, window: SyncWindow) -> Cursor:
        """The starting position for ``folder``: no sync state, bounded by ``window``."""
        if folder is Folder.CALENDAR:
            return Cursor(window.events_from.astimezone(UTC), window.events_to.astimezone(UTC), "")
        return Cursor(window.mail_since.astimezone(UTC), None, "")
