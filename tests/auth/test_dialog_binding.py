"""Issue 18, item 7: a dialog's one-time code is bound to the pane that opened the dialog."""

from __future__ import annotations

import base64
import hashlib

from flask.testing import FlaskClient

from sandbox.login import PANE_VERIFIER, dialog_payload, salesforce_dialog_code
from sandbox.tls import TestCA


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def test_a_code_handed_to_another_pane_is_useless_there(client: FlaskClient, ca: TestCA) -> None:
    code = salesforce_dialog_code(client, ca.ca_path)  # opened by a pane holding PANE_VERIFIER
    other = "another-pane-verifier-" + "x" * 30
    for body in ({"code": code, "mailbox": "alice@acme.example", "verifier": other},
                 {"code": code, "mailbox": "alice@acme.example"}):
        resp = client.post("/api/session", json=body)
        assert resp.status_code == 400, resp.get_data(as_text=True)
        assert resp.json["error"]["code"] in ("invalid_code", "invalid_input")
    # The refusals did not spend it: the pane that opened the dialog still signs in with it.
    resp = client.post("/api/session", json={"code": code, "mailbox": "alice@acme.example",
                                              "verifier": PANE_VERIFIER})
    assert resp.status_code == 201, resp.get_data(as_text=True)


def test_a_dialog_needs_the_panes_challenge(client: FlaskClient) -> None:
    resp = client.get("/auth/salesforce/start")
    assert resp.status_code == 400
    assert dialog_payload(resp.get_data(as_text=True))["error"]["code"] == "pane_challenge_missing"
    assert client.get(f"/auth/salesforce/start?pane_challenge={_challenge('v')}x").status_code == 400


def test_the_dialog_page_names_its_target_origin_and_the_pane_refuses_unknown_origins() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "taskpane_static" / "js"
    assert "targetOrigin: window.location.origin" in (root / "dialog.js").read_text()
    host = (root / "host.js").read_text()
    assert "arg.origin !== window.location.origin" in host and "(arg.origin &&" not in host
