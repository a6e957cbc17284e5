"""Replays: every single-use artefact of a sign-in, used a second time, is refused with its documented error.

| artefact | where it is spent | second use |
|---|---|---|
| OAuth ``state`` (all three dialogs) | ``auth/common`` (``store.once``) | 400 ``state_replayed`` |
| dialog ticket (``POST /api/dialog``'s URL) | ``auth/common.redeem_ticket`` | 401 ``ticket_used`` |
| authorization code + PKCE verifier | the provider's token endpoint | ``salesforce_refused``, ``code_rejected`` |
| OpenID ``nonce`` (Microsoft's ID token) | checked against the flow's own | 400 ``nonce_mismatch`` |
| the dialog's one-time code (``POST /api/session``) | ``auth/common.redeem_dialog_code`` | 400 ``invalid_code`` |

Moved here from ``tests/auth/`` (now parametrised over the providers): the replayed-state tests of
the three dialogs and Microsoft's ticket test. Still there, not repeated: a forged, missing or
expired state, another window's state (``state_mismatch``), a code with another dialog's verifier
(Salesforce), a foreign nonce (Microsoft), a code handed to another pane (``test_dialog_binding``).
Google's flow has no nonce: its ID token comes straight from its token endpoint over TLS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask.testing import FlaskClient

from sandbox.login import PANE_CHALLENGE, PANE_VERIFIER, LoggedIn, dialog_payload, fake_authorize, local_path, login
from sandbox.tls import TestCA
from tests.auth import test_google as google_dialog
from tests.auth import test_microsoft as ms_dialog
from tests.conftest import GoogleFake, RunningFake

ALICE = "alice@acme.example"
PROVIDERS = ["salesforce", "microsoft", "google"]


@pytest.fixture
def app_config(app_config: dict[str, Any], fake_graph: RunningFake, fake_google: GoogleFake) -> dict[str, Any]:
    """Every dialog configured: Graph and Google pointing at their fakes."""
    fake_google.google.add_user(ALICE)
    fake_google.gmail.mailbox(ALICE)
    return {**app_config, "GRAPH_URL": fake_graph.url, **fake_google.settings()}


@pytest.fixture
def alice(client: FlaskClient, ca: TestCA, fake_microsoft: RunningFake) -> LoggedIn:
    """Alice's pane session (and her Microsoft work account)."""
    fake_microsoft.state.add_user(ALICE, aliases=["a.example@acme.example"])
    return login(client, ca.ca_path, mailbox=ALICE)


def _ticket_url(client: FlaskClient, who: LoggedIn, provider: str) -> str:
    # The Salesforce dialog ("switch account") also carries the pane's challenge for its one-time code.
    body = {"provider": provider, **({"pane_challenge": PANE_CHALLENGE} if provider == "salesforce" else {})}
    resp = client.post("/api/dialog", json=body, headers=who.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return local_path(str(resp.json["url"]))  # type: ignore[index]


def _authorize(provider: str, location: str, ca: TestCA) -> str:
    """The person on the provider's page; returns the redirect to our callback."""
    if provider == "salesforce":
        return fake_authorize(location, ca.ca_path, ALICE, "alice-pw")
    return (ms_dialog if provider == "microsoft" else google_dialog).authorize(location, ca.ca_path)


def _start(client: FlaskClient, who: LoggedIn, provider: str) -> str:
    """Open a dialog from the pane (its ticket); returns where it sends the person."""
    start = client.get(_ticket_url(client, who, provider))
    assert start.status_code == 302, start.get_data(as_text=True)
    return str(start.headers["Location"])


def _finish(client: FlaskClient, callback: str) -> tuple[int, dict[str, Any]]:
    resp = client.get(local_path(callback))
    return resp.status_code, dialog_payload(resp.get_data(as_text=True))


def _error(answer: tuple[int, dict[str, Any]]) -> tuple[int, str]:
    status, payload = answer
    assert payload["status"] == "error", payload
    return status, str(payload["error"]["code"])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_replayed_state_is_refused(client: FlaskClient, ca: TestCA, alice: LoggedIn, provider: str) -> None:
    callback = _authorize(provider, _start(client, alice, provider), ca)
    first = _finish(client, callback)
    assert first[0] == 200 and first[1]["status"] == "ok", first
    assert _error(_finish(client, callback)) == (400, "state_replayed")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_replayed_dialog_ticket_is_refused(client: FlaskClient, alice: LoggedIn, provider: str) -> None:
    url = _ticket_url(client, alice, provider)
    assert client.get(url).status_code == 302
    again = client.get(url)
    assert (again.status_code, dialog_payload(again.get_data(as_text=True))["error"]["code"]) == (401, "ticket_used")


@pytest.mark.parametrize(("provider", "code"), [("salesforce", "salesforce_refused"), ("microsoft", "code_rejected"),
                                                ("google", "code_rejected")])
def test_a_spent_code_is_refused_with_the_next_flows_verifier(client: FlaskClient, ca: TestCA, alice: LoggedIn,
                                                               provider: str, code: str) -> None:
    callback = _authorize(provider, _start(client, alice, provider), ca)
    assert _finish(client, callback)[1]["status"] == "ok"
    # The same window starts again (a new state and PKCE verifier in its session) and is handed the
    # spent code: the state is good, the code was issued for the first verifier and used already.
    again = parse_qs(urlsplit(_start(client, alice, provider)).query)
    spent = parse_qs(urlsplit(callback).query)["code"][0]
    path = urlsplit(callback).path
    assert _error(_finish(client, f"{path}?{urlencode({'code': spent, 'state': again['state'][0]})}")) == (400, code)


def test_a_replayed_nonce_is_refused(client: FlaskClient, ca: TestCA, alice: LoggedIn,
                                     fake_microsoft: RunningFake) -> None:
    first = _start(client, alice, "microsoft")
    assert _finish(client, _authorize("microsoft", first, ca))[1]["status"] == "ok"
    # The next sign-in is answered with an ID token minted for the first one's nonce.
    fake_microsoft.state.id_token_nonce_override = parse_qs(urlsplit(first).query)["nonce"][0]
    answer = _finish(client, _authorize("microsoft", _start(client, alice, "microsoft"), ca))
    assert _error(answer) == (400, "nonce_mismatch")


def _dialog_code(client: FlaskClient, ca: TestCA) -> str:
    start = client.get(f"/auth/salesforce/start?pane_challenge={PANE_CHALLENGE}")
    done = _finish(client, fake_authorize(start.headers["Location"], ca.ca_path, ALICE, "alice-pw"))
    assert done[1]["status"] == "ok", done
    return str(done[1]["code"])


@pytest.mark.parametrize("second", [
    lambda code: {"code": code, "mailbox": ALICE, "verifier": PANE_VERIFIER},  # the same pane again
    lambda code: {"code": code, "mailbox": "mallory@acme.example", "verifier": PANE_VERIFIER},  # another mailbox
])
def test_a_replayed_one_time_code_is_refused(client: FlaskClient, ca: TestCA,
                                             second: Callable[[str], dict[str, Any]]) -> None:
    code = _dialog_code(client, ca)
    first = client.post("/api/session", json={"code": code, "mailbox": ALICE, "verifier": PANE_VERIFIER})
    assert first.status_code == 201, first.get_data(as_text=True)
    again = client.post("/api/session", json=second(code))
    assert (again.status_code, again.json["error"]["code"]) == (400, "invalid_code")  # type: ignore[index]
    assert "token" not in (again.json or {})
