"""Push webhooks: ``/hooks/graph``, ``/hooks/graph/lifecycle`` (Graph), ``/hooks/gmail`` (Pub/Sub).

A notification is a trigger, never data: it is checked (a known subscription, its clientState in
constant time), answered 202 at once, and the mailbox's normal delta run is planned (debounced).
"""

from backend.hooks import gmail  # noqa: F401 - registers /hooks/gmail
from backend.hooks.graph import bp

__all__ = ["bp"]
