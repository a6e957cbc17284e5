"""Which verifier checks an add-in identity proof, and what happens after a verified login.

An explicit map, no discovery: a Nested App Authentication token goes to :class:`NaaVerifier`,
an Exchange identity token (it carries ``appctx``) to the Exchange verifier.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from backend.extensions import services
from backend.security.identity import (
    NaaVerifier,
    ProofVerifier,
    VerifiedMailbox,
    is_exchange_identity_token,
)
from backend.store.users import User

log = logging.getLogger(__name__)

# Called after a login whose mailbox was verified, e.g. to start sync without a second dialog.
# Each hook must not raise for expected conditions; a failure is logged and the login stands.
AFTER_LOGIN_HOOKS: list[Callable[[User, VerifiedMailbox], None]] = []


def _naa_verifier() -> NaaVerifier:
    return services().client("naa_verifier", NaaVerifier)


def _exchange_verifier() -> ProofVerifier:
    from backend.security.exchange_identity import ExchangeIdentityVerifier

    return services().client("exchange_identity_verifier", ExchangeIdentityVerifier)


def verify(proof: str, mailbox: str) -> VerifiedMailbox:
    """Check ``proof`` for ``mailbox``; raise ProofInvalid when it does not hold."""
    if is_exchange_identity_token(proof):
        verified = _exchange_verifier().verify(proof, mailbox)
        # The token proves an Exchange user of the mailbox's organisation, and names no address: it
        # proves this address only once that user connected this mailbox with its password. Until
        # then (or after the address changed) the login stands and the mailbox shows as unverified;
        # it never blocks, so a renamed mailbox can still reach Connect to Exchange.
        proven = services().store.exchange_ids.addresses(verified.identity)
        if mailbox.strip().lower() not in proven:
            return dataclasses.replace(verified, confirmed=False)
        return verified
    return _naa_verifier().verify(proof, mailbox)


def confirm_exchange_identity(user: User, addresses: list[str]) -> bool:
    """After a password-proven Exchange connection: tie the user's identity token to the mailbox.

    Returns True when the add-in mailbox is now verified.
    """
    if not user.addin_identity.startswith("exchange:") or user.addin_mailbox.lower() not in \
            {a.lower() for a in addresses}:
        return False
    store = services().store
    store.exchange_ids.bind(user.addin_identity, addresses)
    if not user.addin_mailbox_verified:
        store.users.update(user.id, addin_mailbox_verified=True)
    return True


def after_login(user: User, verified: VerifiedMailbox) -> None:
    """Run the after-login hooks; a failing hook never fails the login."""
    for hook in AFTER_LOGIN_HOOKS:
        try:
            hook(user, verified)
        except Exception:
            log.exception("after-login hook %s failed uid=%s", getattr(hook, "__name__", hook), user.id)
