"""Mailboxes of a tenant as mass activation finds them: ``/users/{address}`` and a probe of the mailbox, app-only.

Two GETs per person in ``$batch`` calls (ten people a call): the directory entry (mail,
proxyAddresses) and the Inbox folder. Exchange's RBAC for Applications (or an
ApplicationAccessPolicy) leaves the directory readable but answers 403 for a mailbox outside the
app's scope, so only the probe tells whether sync may read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

import requests

from backend.config import Settings
from backend.connectors.graph.http import GraphClient, GraphRequest, GraphResponse, check
from backend.connectors.graph.identity import MicrosoftAuth
from backend.connectors.graph.items import identity_from
from backend.connectors.graph.tokens import AppOnlyTokens
from backend.connectors.mailbox import MailboxIdentity

_PROFILE = "?$select=id,mail,userPrincipalName,proxyAddresses,displayName"


@dataclass(frozen=True)
class FoundMailbox:
    """What the tenant says of one address: ``found``, ``missing``, ``mismatch`` or ``forbidden`` (out of scope)."""

    address: str
    status: str
    object_id: str = ""
    identity: MailboxIdentity | None = None


class TenantDirectory:
    """App-only lookups of mailboxes in one tenant."""

    def __init__(self, settings: Settings, auth: MicrosoftAuth, tenant: str,
                 session: requests.Session | None = None) -> None:
        self.client = GraphClient(settings, AppOnlyTokens(auth, tenant), f"tenant:{tenant}", session or auth.session)

    @property
    def calls(self) -> int:
        """Graph requests made (sub-requests counted)."""
        return self.client.calls

    def find(self, addresses: Iterable[str]) -> dict[str, FoundMailbox]:
        """Each address's mailbox (a refused app token raises, as every lookup would fail alike)."""
        wanted = list(dict.fromkeys(a.strip().lower() for a in addresses if a.strip()))
        requests_: list[GraphRequest] = []
        for address in wanted:
            path = f"/users/{quote(address, safe='@.')}"
            requests_ += [GraphRequest(path + _PROFILE), GraphRequest(f"{path}/mailFolders/inbox?$select=id")]
        answers = self.client.batch(requests_)
        return {address: _found(address, answers[2 * n], answers[2 * n + 1]) for n, address in enumerate(wanted)}

    def close(self) -> None:
        """Release connections."""
        self.client.close()


def _found(address: str, profile: GraphResponse, probe: GraphResponse) -> FoundMailbox:
    if profile.status == 404 or probe.status == 404:
        return FoundMailbox(address, "missing")
    if profile.status == 403 or probe.status == 403:
        return FoundMailbox(address, "forbidden")
    body = check(profile).body  # anything else unexpected is the domain error it stands for
    check(probe)
    if not isinstance(body, dict) or not body.get("id") or not body.get("mail"):
        return FoundMailbox(address, "missing")  # a directory user without a mailbox has no mail
    # The sign-in name is not a mail address: only mail and the SMTP proxy addresses receive mail.
    identity = identity_from({**body, "userPrincipalName": ""})
    status = "found" if identity.matches(address) else "mismatch"
    return FoundMailbox(address, status, str(body["id"]), identity)
