"""Drive the Salesforce sign-in dialog end to end against the fake, over the wire (tests and bench).

The checks are plain ``assert``: a step that does not answer as the real dialog would is a broken
setup, whoever is driving it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from flask.testing import FlaskClient

# The verifier a test "pane" keeps; the dialog's start URL carries its hash as pane_challenge and
# POST /api/session needs the verifier itself (issue 18: a code is only good to the pane that opened the dialog).
PANE_VERIFIER = "test-pane-verifier-" + "v" * 30
PANE_CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(PANE_VERIFIER.encode()).digest()).rstrip(b"=").decode()
_RESULT = re.compile(r'id="dialog-result"[^>]*data-result="([^"]*)"')
_GRANT = re.compile(r'name="grant" value="([^"]+)"')


def dialog_payload(page: str) -> dict[str, Any]:
    """The JSON a dialog-result page hands the task pane through messageParent."""
    match = _RESULT.search(page)
    assert match, f"no dialog result in page: {page[:300]}"
    data: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return data


def local_path(url: str) -> str:
    """Path and query of one of our URLs, for the Flask test client."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def fake_authorize(authorize_url: str, ca_path: str, username: str, password: str, action: str = "allow") -> str:
    """Play the person on the fake Salesforce login page; returns the redirect to our callback."""
    page = requests.get(authorize_url, verify=ca_path, timeout=10)
    assert page.status_code == 200, page.text
    grant = _GRANT.search(page.text)
    assert grant, page.text
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(authorize_url))
    resp = requests.post(
        f"{origin}/services/oauth2/authorize/approve",
        data={"grant": grant.group(1), "username": username, "pw": password, "action": action},
        verify=ca_path,
        allow_redirects=False,
        timeout=10,
    )
    assert resp.status_code == 302, resp.text
    return str(resp.headers["Location"])


@dataclass
class LoggedIn:
    """A task pane session."""

    token: str
    uid: str

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header for API calls."""
        return {"Authorization": f"Bearer {self.token}"}


def salesforce_dialog_code(
    client: FlaskClient,
    ca_path: str,
    username: str = "alice@acme.example",
    password: str = "alice-pw",
    start_query: str = "",
) -> str:
    """Run the Salesforce dialog (start -> fake login -> callback) and return the one-time code."""
    query = f"pane_challenge={PANE_CHALLENGE}" + (f"&{start_query}" if start_query else "")
    start = client.get(f"/auth/salesforce/start?{query}")
    assert start.status_code == 302, start.get_data(as_text=True)
    callback = fake_authorize(start.headers["Location"], ca_path, username, password)
    done = client.get(local_path(callback))
    assert done.status_code == 200, done.get_data(as_text=True)
    payload = dialog_payload(done.get_data(as_text=True))
    assert payload["status"] == "ok", payload
    return str(payload["code"])


def login(
    client: FlaskClient,
    ca_path: str,
    mailbox: str = "alice@acme.example",
    proof: str | None = None,
    username: str = "alice@acme.example",
    password: str = "alice-pw",
) -> LoggedIn:
    """Log in through the dialog and trade the code for a bearer token."""
    code = salesforce_dialog_code(client, ca_path, username, password)
    body: dict[str, Any] = {"code": code, "mailbox": mailbox, "verifier": PANE_VERIFIER}
    if proof is not None:
        body["mailbox_proof"] = proof
    resp = client.post("/api/session", json=body)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    me = client.get("/api/me", headers={"Authorization": f"Bearer {resp.json['token']}"})  # type: ignore[index]
    assert me.status_code == 200, me.get_data(as_text=True)
    return LoggedIn(token=resp.json["token"], uid=me.json["user"]["id"])  # type: ignore[index]
