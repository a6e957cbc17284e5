"""Which verifier checks an add-in identity proof, and what happens after a verified login.

An explicit map, no discovery: a Nested App Authentication token goes to :class:`NaaVerifier`,
an Exchange identity token (it carries ``appctx``) to the Exchange verifier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from backend.config import Settings
from backend.extensions import services
from backend.security.identity import (
    NaaVerifier,
    ProofInvalid,
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
    svc = services()
    verifier = svc.clients.get("naa_verifier")
    if verifier is None:
        verifier = NaaVerifier(svc.settings)
        svc.clients["naa_verifier"] = verifier
    return verifier


def _exchange_verifier() -> ProofVerifier | None:
    # Built from settings on first use (tests may still put their own in the clients dict).
    svc = services()
    verifier: ProofVerifier | None = svc.clients.get("exchange_identity_verifier")
    if verifier is None:
        from backend.security.exchange_identity import ExchangeIdentityVerifier

        verifier = ExchangeIdentityVerifier(svc.settings)
        svc.clients["exchange_identity_verifier"] = verifier
    return verifier


def verify(settings: Settings, proof: str, mailbox: str) -> VerifiedMailbox:
    """Check ``proof`` for ``mailbox``; raise ProofInvalid when it does not hold."""
    if is_exchange_identity_token(proof):
        verifier = _exchange_verifier()
        if verifier is None:
            raise ProofInvalid("Exchange identity tokens are not accepted by this server.")
        return verifier.verify(proof, mailbox)
    return _naa_verifier().verify(proof, mailbox)


def after_login(user: User, verified: VerifiedMailbox) -> None:
    """Run the after-login hooks; a failing hook never fails the login."""
    for hook in AFTER_LOGIN_HOOKS:
        try:
            hook(user, verified)
        except Exception:
            log.exception("after-login hook %s failed uid=%s", getattr(hook, "__name__", hook), user.id)
