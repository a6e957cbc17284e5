# TEMPORARY re-export for the house merge: delete once connectors import backend.net
"""The names backend/connectors/exchange.py imports from the old ``backend.net.ssrf`` module."""

from backend.net.adapter import GuardedAdapter as GuardedAdapter
from backend.net.adapter import guarded_session as guarded_session
from backend.net.adapter import mount_guarded as mount_guarded
from backend.net.deadline import RequestBudget as RequestBudget
from backend.net.guard import HostGuard as HostGuard
from backend.net.guard import HostNotAllowed as HostNotAllowed
