"""Which mailbox a login is: ResolveNames, confirmed against the signed-in account's own Inbox.

With an email address as login, the mailbox is the ResolveNames entry with that exact address. With
``DOMAIN\\user``, ResolveNames matches loosely (a display-name prefix is enough) and can name
someone else's mailbox, so a candidate counts only if it is the signed-in account's own: its Inbox
must be the Inbox the server opens for us when no mailbox is named (one GetFolder call for all
candidates). Otherwise ``mailbox_not_found`` asks for the email address. ResolveNames reports at most
three addresses per user (Exchange's ``EmailAddress1..3``), so more aliases than that are not seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from exchangelib import errors as ews_errors
from exchangelib.folders import Inbox, Root
from exchangelib.items import ID_ONLY
from exchangelib.protocol import Protocol
from exchangelib.services import GetFolder
from exchangelib.util import add_xml_child, create_element

from backend.connectors.exchange.transport import account_for
from backend.connectors.mailbox import MailboxIdentity
from backend.errors import SetupFailed

# ResolveNames candidates checked against the signed-in account's own mailbox (one GetFolder call).
MAX_IDENTITY_CANDIDATES = 10


def resolve_identity(protocol: Protocol, login: str) -> MailboxIdentity:
    """The signed-in account's mailbox: primary SMTP address and aliases (ResolveNames, directory only).

    An email login names its mailbox exactly. Anything else (``DOMAIN\\user``) is confirmed against
    the account's own Inbox (see :func:`_own_mailbox`), because ResolveNames matches names loosely.
    """
    is_address = "@" in login and "\\" not in login
    entry = login.split("\\", 1)[1] if "\\" in login else login
    candidates = directory_candidates(protocol, entry)
    if is_address:
        exact = [c for c in candidates if c.matches(entry)]
        if len(exact) == 1:
            return exact[0]
    if not candidates:
        raise SetupFailed("mailbox_not_found", "Exchange accepted the login but found no mailbox for it. Use your "
                                               "email address as Login.")
    own = _own_mailbox(protocol, candidates[:MAX_IDENTITY_CANDIDATES])
    if own is None:
        raise SetupFailed("mailbox_not_found", f"We could not tell for sure which mailbox belongs to {entry}. Use "
                                               "your email address as Login.")
    return own


def directory_candidates(protocol: Protocol, entry: str) -> list[MailboxIdentity]:
    """Mailboxes ResolveNames finds for ``entry`` in the directory, with their SMTP aliases."""
    results = protocol.resolve_names([entry], return_full_contact_data=True, search_scope="ActiveDirectory")
    candidates: list[MailboxIdentity] = []
    for result in results:
        if isinstance(result, Exception) or not isinstance(result, tuple):
            continue
        mailbox, contact = result
        address = (getattr(mailbox, "email_address", None) or "").strip().lower()
        if "@" not in address or getattr(mailbox, "mailbox_type", None) not in (None, "Mailbox"):
            continue
        aliases: set[str] = set()
        for entry_address in getattr(contact, "email_addresses", None) or []:
            text = (entry_address.email or "").strip()
            prefix, _, rest = text.partition(":")
            if rest and prefix.lower() == "smtp":
                aliases.add(rest.lower())
            elif not rest and "@" in text:
                aliases.add(text.lower())
        aliases.discard(address)
        name = getattr(mailbox, "name", None) or getattr(contact, "display_name", None) or ""
        candidates.append(MailboxIdentity(primary=address, aliases=frozenset(aliases), display_name=name))
    return candidates


class _InboxIds(GetFolder):
    """GetFolder for the Inbox of each mailbox given (None: the signed-in account's own), ids only."""

    # Someone else's mailbox answers "access denied" or "no such mailbox": an answer, not a failure.
    ERRORS_TO_CATCH_IN_RESPONSE = (*GetFolder.ERRORS_TO_CATCH_IN_RESPONSE, ews_errors.ErrorNonExistentMailbox)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Which mailbox each requested Inbox object stands for (by identity: the objects are equal).
        self._mailbox_of: dict[int, str | None] = {}

    def inbox_ids(self, mailboxes: list[str | None]) -> Iterator[str | None]:
        """The Inbox folder id per mailbox, in order (None where the server refused)."""
        # GetFolder's public call() requests and parses folder objects; ours only carry the mailbox
        # to our get_payload (a Root built here makes no request).
        root = Root(account=self.account)
        folders = [Inbox(root=root) for _ in mailboxes]
        self._mailbox_of = {id(folder): address for folder, address in zip(folders, mailboxes, strict=True)}
        for result in self.call(folders=folders, additional_fields=None, shape=ID_ONLY):
            yield None if isinstance(result, Exception) else (result.id or None)

    def get_payload(self, folders: list[Inbox], additional_fields: Any, shape: str) -> Any:
        """The GetFolder request: exchangelib insists on a mailbox in every distinguished id; we need none for ours."""
        payload = create_element(f"m:{self.SERVICE_NAME}")
        shape_elem = create_element("m:FolderShape")
        add_xml_child(shape_elem, "t:BaseShape", "IdOnly")
        payload.append(shape_elem)
        ids = create_element("m:FolderIds")
        for address in (self._mailbox_of[id(f)] for f in folders):
            folder = create_element("t:DistinguishedFolderId", attrs={"Id": "inbox"})
            if address:
                mailbox = create_element("t:Mailbox")
                add_xml_child(mailbox, "t:EmailAddress", address)
                folder.append(mailbox)
            ids.append(folder)
        payload.append(ids)
        return payload


def _own_mailbox(protocol: Protocol, candidates: list[MailboxIdentity]) -> MailboxIdentity | None:
    """The one candidate whose Inbox is the signed-in account's own Inbox, or None.

    Without a mailbox in the request, the server opens the caller's own mailbox: the same folder id
    there and under a candidate's address means the candidate *is* the caller (a mailbox the caller
    may only open as a delegate has other ids, and others' answer "access denied").
    """
    account = account_for(protocol, candidates[0].primary)
    ids = list(_InboxIds(account=account).inbox_ids([None, *(c.primary for c in candidates)]))
    own_id = ids[0] if ids else None
    if not own_id:
        return None
    mine = [c for c, folder_id in zip(candidates, ids[1:], strict=False) if folder_id == own_id]
    return mine[0] if len(mine) == 1 else None
