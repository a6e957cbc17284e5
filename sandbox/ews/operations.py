"""The EWS operations the fake serves: ConvertId, ResolveNames, GetFolder, SyncFolderHierarchy, SyncFolderItems,
GetItem, FindItem.

Each ``_op_<Name>`` fills the ``ResponseMessages`` of its response for the signed-in user; it runs with
the state's lock held.
"""

from __future__ import annotations

import base64
from typing import Any

from sandbox.ews.recurrence import in_view, occurrence, parse_occurrence_id
from sandbox.ews.render import add_mailbox, matches, render_item, requested_fields
from sandbox.ews.soap import FOLDER_INFO, FOLDERS, MAX_SYNC_CHANGES, M, SoapError, T, el, message, parse_dt
from sandbox.ews.state import EwsUser, FakeEwsState


class EwsOperations:
    """The SOAP operations, as methods named ``_op_<Operation>`` (the dispatcher finds them by name)."""

    state: FakeEwsState

    def _owner(self, user: EwsUser, folder_id: Any) -> tuple[str, str]:
        """(owner, distinguished folder) for a DistinguishedFolderId (Mailbox element optional)."""
        if folder_id is None or folder_id.tag != T + "DistinguishedFolderId":
            raise SoapError("ErrorFolderNotFound", "The specified folder could not be found in the store.")
        name = folder_id.get("Id", "")
        if name not in FOLDER_INFO:
            raise SoapError("ErrorFolderNotFound", "The specified folder could not be found in the store.")
        owner = (folder_id.findtext(f"{T}Mailbox/{T}EmailAddress") or user.email).lower()
        if owner not in self.state.users:
            raise SoapError("ErrorNonExistentMailbox", f"No mailbox with such guid or SMTP address {owner}.")
        if owner != user.email:
            raise SoapError("ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return owner, name

    def _op_ConvertId(self, user: EwsUser, request: Any, messages: Any) -> None:
        for _ in request.iter(T + "AlternateId"):
            message(messages, "ConvertId", "ErrorInvalidIdMalformed", "Id is malformed.")

    def _op_ResolveNames(self, user: EwsUser, request: Any, messages: Any) -> None:
        full = request.get("ReturnFullContactData", "false").lower() == "true"
        for entry in request.iter(M + "UnresolvedEntry"):
            needle = (entry.text or "").strip().lower()
            if needle.startswith("smtp:"):
                needle = needle[5:]
            found = [u for u in self.state.users.values() if needle and not u.hidden and (
                needle in {u.email, *u.aliases, u.account.lower()}
                or u.display_name.lower().startswith(needle)
                or f"{u.domain}\\{u.account}".lower() == needle)]
            if not found:
                message(messages, "ResolveNames", "ErrorNameResolutionNoResults", "No results were found.")
                continue
            msg = el(M + "ResolveNamesResponseMessage", messages,
                     ResponseClass="Success" if len(found) == 1 else "Warning")
            if len(found) > 1:
                el(M + "MessageText", msg, "Multiple results were found.")
            el(M + "ResponseCode", msg, "NoError" if len(found) == 1 else "ErrorNameResolutionMultipleResults")
            if len(found) > 1:
                el(M + "DescriptiveLinkKey", msg, "0")
            rset = el(M + "ResolutionSet", msg, TotalItemsInView=str(len(found)), IncludesLastItemInRange="true")
            for u in found:
                res = el(T + "Resolution", rset)
                add_mailbox(res, (u.email, u.display_name), "Mailbox")
                if full:
                    contact = el(T + "Contact", res)
                    el(T + "DisplayName", contact, u.display_name)
                    addresses = el(T + "EmailAddresses", contact)
                    entries = [f"SMTP:{u.email}", *(f"smtp:{a}" for a in u.aliases)]
                    for n, text in enumerate(entries[:3], start=1):
                        el(T + "Entry", addresses, text, Key=f"EmailAddress{n}")
                    el(T + "ContactSource", contact, "ActiveDirectory")

    def _op_GetFolder(self, user: EwsUser, request: Any, messages: Any) -> None:
        ids = request.find(M + "FolderIds")
        for folder_id in ids if ids is not None else []:
            try:
                owner, name = self._owner(user, folder_id)
            except SoapError as exc:
                message(messages, "GetFolder", exc.code, exc.text)
                continue
            msg = message(messages, "GetFolder")
            self._folder_node(el(M + "Folders", msg), owner, name)

    def _folder_node(self, parent: Any, owner: str, name: str) -> Any:
        """A folder as GetFolder and SyncFolderHierarchy render it (its id is stable: owner and name)."""
        tag, folder_class, display = FOLDER_INFO[name]
        node = el(T + tag, parent)
        fid = base64.b64encode(f"{owner}/{name}".encode()).decode()
        el(T + "FolderId", node, Id=fid, ChangeKey="AQAAAA==")
        if folder_class:
            el(T + "FolderClass", node, folder_class)
        el(T + "DisplayName", node, display)
        count = sum(1 for i in self.state.items.values() if i.owner == owner and i.folder == name)
        el(T + "TotalCount", node, str(count))
        el(T + "ChildFolderCount", node, "0")
        el(T + "UnreadCount", node, "0")
        return node

    def _op_SyncFolderHierarchy(self, user: EwsUser, request: Any, messages: Any) -> None:
        """The folders under the message folder root: all of them (Create) without a state, else those changed.

        As Exchange does, a folder counts as changed (Update) when its contents changed: a message
        or meeting in it was created, changed or deleted after the state (its commit time moved).
        """
        op = "SyncFolderHierarchy"
        owner = user.email
        token = (request.findtext(M + "SyncState") or "").strip()
        seq = 0
        if token:
            found = self.state._read_state(token, owner, "hierarchy")
            if found is None:
                msg = message(messages, op, "ErrorInvalidSyncStateData",
                              "Synchronization state data is corrupt or otherwise invalid.")
                el(M + "SyncState", msg)
                el(M + "IncludesLastFolderInRange", msg, "true")
                return
            seq = found
        now = max((e[0] for e in self.state.log if e[1] == owner), default=0)
        changed = {e[2] for e in self.state.log if e[1] == owner and e[0] > seq}
        msg = message(messages, op)
        el(M + "SyncState", msg, self.state._state(owner, "hierarchy", max(now, seq)))
        el(M + "IncludesLastFolderInRange", msg, "true")
        holder = el(M + "Changes", msg)
        for name in FOLDERS:
            if not token:
                self._folder_node(el(T + "Create", holder), owner, name)
            elif name in changed:
                self._folder_node(el(T + "Update", holder), owner, name)

    def _check_no_body(self, fields: tuple[str, ...]) -> None:
        if "item:Body" in fields or "item:TextBody" in fields:
            raise SoapError("ErrorInvalidPropertyRequest", "The property 'Body' can't be used in this request.")

    def _op_SyncFolderItems(self, user: EwsUser, request: Any, messages: Any) -> None:
        op = "SyncFolderItems"
        fields = requested_fields(request.find(M + "ItemShape"))
        self.state.requested_fields.append((op, fields))
        try:
            self._check_no_body(fields)
            holder = request.find(M + "SyncFolderId")
            owner, folder = self._owner(user, holder[0] if holder is not None and len(holder) else None)
            if folder not in FOLDERS:
                raise SoapError("ErrorSyncFolderNotFound", "The folder cannot be synchronized.")
            token = (request.findtext(M + "SyncState") or "").strip()
            seq = 0
            if token:
                found = self.state._read_state(token, owner, folder)
                if found is None:
                    raise SoapError("ErrorInvalidSyncStateData",
                                    "Synchronization state data is corrupt or otherwise invalid.")
                seq = found
            limit = min(int(request.findtext(M + "MaxChangesReturned") or "100"), MAX_SYNC_CHANGES)
        except SoapError as exc:
            msg = message(messages, op, exc.code, exc.text)
            el(M + "SyncState", msg)
            el(M + "IncludesLastItemInRange", msg, "true")
            return
        changes, cut, includes_last = self.state.changes_since(owner, folder, seq, max(limit, 1))
        msg = message(messages, op)
        el(M + "SyncState", msg, self.state._state(owner, folder, cut))
        el(M + "IncludesLastItemInRange", msg, "true" if includes_last else "false")
        holder = el(M + "Changes", msg)
        for change, item_id in changes:
            node = el(T + change, holder)
            if change == "Delete":
                el(T + "ItemId", node, Id=item_id)
            else:
                render_item(node, self.state.items[item_id], fields)

    def _op_GetItem(self, user: EwsUser, request: Any, messages: Any) -> None:
        fields = requested_fields(request.find(M + "ItemShape"))
        self.state.requested_fields.append(("GetItem", fields))
        ids = request.find(M + "ItemIds")
        for item_id in ids if ids is not None else []:
            item = self.state.items.get(item_id.get("Id", ""))
            series = parse_occurrence_id(item_id.get("Id", ""))
            if item is None and series is not None and series[0] in self.state.items:
                item = occurrence(self.state.items[series[0]], series[1])
            if item is None or item.owner != user.email:
                message(messages, "GetItem", "ErrorItemNotFound", "The specified object was not found in the store.")
                continue
            msg = message(messages, "GetItem")
            render_item(el(M + "Items", msg), item, fields)

    def _op_FindItem(self, user: EwsUser, request: Any, messages: Any) -> None:
        fields = requested_fields(request.find(M + "ItemShape"))
        self.state.requested_fields.append(("FindItem", fields))
        holder = request.find(M + "ParentFolderIds")
        for folder_id in holder if holder is not None else []:
            try:
                self._check_no_body(fields)
                owner, folder = self._owner(user, folder_id)
            except SoapError as exc:
                message(messages, "FindItem", exc.code, exc.text)
                continue
            items = [i for i in self.state.items.values() if i.owner == owner and i.folder == folder]
            view = request.find(M + "CalendarView")
            if view is not None:
                self._calendar_view(messages, items, view, fields)
                continue
            restriction = request.find(M + "Restriction")
            if restriction is not None and len(restriction):
                items = [i for i in items if matches(restriction[0], i)]
            items.sort(key=lambda i: i.received or i.created, reverse=True)
            view = request.find(M + "IndexedPageItemView")
            offset = int(view.get("Offset", "0")) if view is not None else 0
            size = int(view.get("MaxEntriesReturned", "1000")) if view is not None else 1000
            page = items[offset:offset + size]
            msg = message(messages, "FindItem")
            last = offset + len(page) >= len(items)
            root = el(M + "RootFolder", msg, TotalItemsInView=str(len(items)),
                      IncludesLastItemInRange="true" if last else "false",
                      **({} if last else {"IndexedPagingOffset": str(offset + len(page))}))
            container = el(T + "Items", root)
            for item in page:
                render_item(container, item, fields)


    def _calendar_view(self, messages: Any, items: list[Any], view: Any, fields: tuple[str, ...]) -> None:
        """FindItem with a CalendarView: single items and series occurrences overlapping the view."""
        start, end = parse_dt(view.get("StartDate", "")), parse_dt(view.get("EndDate", ""))
        found = []
        for item in items:
            if item.item_type == "RecurringMaster":
                found.extend(in_view(item, start, end))
            elif item.start is not None and item.end is not None and item.end > start and item.start < end:
                found.append(item)
        found.sort(key=lambda i: i.start)
        msg = message(messages, "FindItem")
        root = el(M + "RootFolder", msg, TotalItemsInView=str(len(found)), IncludesLastItemInRange="true")
        container = el(T + "Items", root)
        for item in found:
            render_item(container, item, fields)
