"""Administration of an org's Sidebar Sync: who is an admin, the users' rows, actions, the audit, the digest.

Below the HTTP edges (``api/admin*.py``, ``auth/console.py``) and the jobs; never imports them.
"""
