"""Which verifier checks an add-in identity proof.

An explicit map, no discovery: a Nested App Authentication token goes to the NAA verifier, an
Exchange identity token (it carries ``appctx``) to the Exchange verifier. The verifiers and what
the store knows of Exchange identities are handed in by the caller (the session view).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection

from backend.security.identity import ProofVerifier, VerifiedMailbox, is_exchange_identity_token


def verify(proof: str, mailbox: str, *, naa: ProofVerifier, exchange: ProofVerifier,
           proven_addresses: Callable[[str], Collection[str]]) -> VerifiedMailbox:
    """Check ``proof`` for ``mailbox``; raise ProofInvalid when it does not hold.

    ``proven_addresses(identity)`` names the addresses an Exchange identity has proven with its
    password (see :func:`backend.sync.activation.confirm_exchange_identity`).
    """
    if not is_exchange_identity_token(proof):
        return naa.verify(proof, mailbox)
    verified = exchange.verify(proof, mailbox)
    # The token proves an Exchange user of the mailbox's organisation, and names no address: it
    # proves this address only once that user connected this mailbox with its password. Until
    # then (or after the address changed) the login stands and the mailbox shows as unverified;
    # it never blocks, so a renamed mailbox can still reach Connect to Exchange.
    if mailbox.strip().lower() not in proven_addresses(verified.identity):
        return dataclasses.replace(verified, confirmed=False)
    return verified
