"""Which verifier checks an add-in identity proof, and what happens after a verified login.

An explicit map, no discovery: a Nested App Authentication token goes to :class:`NaaVerifier`,
an Exchange identity token (it carries ``appctx``) to the Exchange verifier.
"""

from __future__ import annotations

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
        return _exchange_verifier().verify(proof, mailbox)
    return _naa_verifier().verify(proof, mailbox)


def after_login(user: User, verified: VerifiedMailbox) -> None:
    """Run the after-login hooks; a failing hook never fails the login."""
    for hook in AFTER_LOGIN_HOOKS:
        try:
            hook(user, verified)
        except Exception:
            log.exception("after-login hook %s failed uid=%s", getattr(hook, "__name__", hook), user.id)
