"""Helpers of the administration tests: a console sign-in over the wire, and users seeded in an org."""

from __future__ import annotations

import time
from typing import Any

from flask.testing import FlaskClient

from backend.extensions import services
from backend.store.users import User, user_id_for
from sandbox.login import fake_authorize, local_path

ORG = "00D000000000001EAA"
OTHER_ORG = "00D000000000002AAA"
COOKIE = "__Host-sidebar-console"


def console_login(client: FlaskClient, ca_path: str, username: str, password: str) -> str:
    """Sign in to the console (``/admin/login`` -> Salesforce -> callback); returns the CSRF token."""
    start = client.get("/admin/login")
    assert start.status_code == 302
    begin = client.get(local_path(start.headers["Location"]))
    assert begin.status_code == 302, begin.get_data(as_text=True)
    callback = fake_authorize(begin.headers["Location"], ca_path, username, password)
    done = client.get(local_path(callback))
    assert done.status_code == 303 and done.headers["Location"] == "/admin", done.get_data(as_text=True)
    cookie = done.headers["Set-Cookie"]
    assert COOKIE in cookie and "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    session = client.get("/api/admin/session")
    assert session.status_code == 200, session.json
    return str(session.json["csrf"])  # type: ignore[index]


def seed_user(org_id: str, n: int, state: str = "running", provider: str = "exchange", **mailbox: Any) -> str:
    """A user of ``org_id`` with a sync mailbox in ``state`` (written as the repositories write them)."""
    store = services().store
    uid = user_id_for(org_id, f"005SEED{n:08d}")
    store.users.save(User(id=uid, org_id=org_id, sf_user_id=f"005SEED{n:08d}", username=f"user{n}@acme.example",
                          email=f"user{n}@acme.example", display_name=f"User {n:05d}"))
    store.mailboxes.ensure(uid, org_id)
    if state != "not_activated":
        store.mailboxes.activate(uid, provider, f"user{n}@acme.example")
        if state == "paused":
            store.mailboxes.pause(uid)
        elif state == "disabled_error":
            store.mailboxes.disable(uid, "auth_failed", "The mail server refused the saved password.")
        elif state == "deactivated":
            store.mailboxes.deactivate(uid)
    if mailbox:
        store.mailboxes.update(uid, **mailbox)
    return uid


def run_record(status: str = "ok", at: float | None = None) -> dict[str, Any]:
    """A run record as the engine writes it (counts only)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at or time.time()))
    return {"id": "r1", "started_at": when, "finished_at": when, "status": status, "trigger": "background",
            "counts": {"read": 3, "written": 2, "duplicates": 1, "filtered": 0, "quarantined": 0},
            "error": {"code": "auth_failed"} if status == "error" else None}
