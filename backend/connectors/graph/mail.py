"""Message delta per mail folder: ``/mailFolders/{inbox|sentitems}/messages/delta`` over the sync window."""

from __future__ import annotations

from backend.connectors.graph.http import encode_query, graph_time
from backend.connectors.graph.items import MESSAGE_FIELDS, SENSITIVITY_PROPERTY
from backend.connectors.mailbox import Folder, SyncWindow

# Graph's well-known folder names for the folders sync reads.
MAIL_FOLDER_IDS = {Folder.INBOX: "inbox", Folder.SENT: "sentitems"}


def messages_delta_path(user_path: str, folder: Folder, window: SyncWindow) -> str:
    """The first request of a message delta round for a mail ``folder``: what sync reads, since the window."""
    query = {
        "$select": ",".join(MESSAGE_FIELDS),
        "$expand": f"singleValueExtendedProperties($filter=id eq '{SENSITIVITY_PROPERTY}')",
        "$filter": f"receivedDateTime ge {graph_time(window.mail_since)}",
    }
    return f"{user_path}/mailFolders/{MAIL_FOLDER_IDS[folder]}/messages/delta?{encode_query(query)}"
