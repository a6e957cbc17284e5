"""Domain errors: what connectors raise instead of vendor exceptions.

Every connector translates its vendor's errors at its boundary into these, so the sync engine,
jobs and API never import a vendor library. Messages are for people and never contain a secret.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of the domain errors. ``transient`` says whether a later retry may succeed."""

    transient: bool = True
    code: str = "connector_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()


class AuthRevoked(ConnectorError):
    """The service no longer accepts our credentials (revoked token, changed password)."""

    transient = False
    code = "auth_revoked"


class Throttled(ConnectorError):
    """The service asked us to slow down; ``retry_after`` is its hint in seconds."""

    transient = True
    code = "throttled"

    def __init__(self, message: str = "", retry_after: float = 60.0) -> None:
        super().__init__(message or "The service is busy and asked us to wait.")
        self.retry_after = max(0.0, float(retry_after))


class Unavailable(ConnectorError):
    """The service could not be reached or failed; a later run may succeed."""

    transient = True
    code = "unavailable"


class AnswerLate(Unavailable):
    """The request was sent but its answer did not come in time: the service may still carry it out."""


class ServiceMisconfigured(Unavailable):
    """The service refused *our* server's credentials (an expired app secret, a removed app), not the user's.

    Transient for the run and never counted as the user's authentication failure: reconnecting the
    mailbox cannot fix it, an administrator must. Connectors log it at ERROR.
    """

    code = "service_misconfigured"


class ItemRejected(ConnectorError):
    """One item was refused; the run goes on without it."""

    transient = False
    code = "item_rejected"

    def __init__(self, reason: str, item_ref: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.item_ref = item_ref


class CursorExpired(ConnectorError):
    """A saved cursor (sync state, delta link, history id) is no longer valid: resync from the window."""

    transient = True
    code = "cursor_expired"


class SetupFailed(ConnectorError):
    """Connecting a mailbox failed in a way the person can act on (``code`` says which)."""

    transient = False
    # Whether the attempt sent credentials anywhere before it failed (attempt limits count only
    # those); True unless the connector knows better, so an unknown case is counted.
    credentials_sent = True

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class NotAuthentic(ConnectorError):
    """A message pushed to us did not prove it came from the provider (a forged or foreign token)."""

    transient = False
    code = "not_authentic"


class NotPreauthorized(AuthRevoked):
    """The service will not sign this person in for us: no administrator pre-authorised them for our app."""

    code = "salesforce_not_authorized"
