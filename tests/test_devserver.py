"""The development command: everything starts, a newcomer can log in to the sandbox, Ctrl-C stops all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from backend.net.outbound import make_session
from sandbox.demo import (
    DEMO_PASSWORD,
    DEMO_USER,
    EWS_PORT,
    GOOGLE_PORT,
    GRAPH_PORT,
    MICROSOFT_PORT,
    SALESFORCE_PORT,
)
from sandbox.login import PANE_CHALLENGE, PANE_VERIFIER, dialog_payload

ROOT = Path(__file__).resolve().parent.parent
# The web app and the sandbox services (Salesforce, Microsoft sign-in, Graph, Exchange, Google).
PORTS = (3000, SALESFORCE_PORT, MICROSOFT_PORT, GRAPH_PORT, EWS_PORT, GOOGLE_PORT)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _drain(proc: subprocess.Popen[str]) -> str:
    """What the development server printed so far (for a failing assertion's message)."""
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    return out[-4000:]


@pytest.mark.slow
def test_dev_command_runs_the_system_and_stops_everything() -> None:
    busy = [p for p in PORTS if _port_open(p)]
    assert not busy, f"ports {busy} are taken: stop the running development server first"
    env = {k: v for k, v in os.environ.items()
           if k not in {"REDIS_URL", "SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET", "SIDEBAR_ENV"}}
    proc = subprocess.Popen([sys.executable, "-m", "scripts.devserver"], cwd=str(ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ca = str(ROOT / "var" / "dev-certs" / "ca.pem")
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if requests.get("https://localhost:3000/healthz", verify=ca, timeout=2).json()["redis"] == "ok":
                    break
            except (requests.RequestException, OSError, ValueError):
                pass
            assert time.monotonic() < deadline, "the development server did not come up"
            time.sleep(0.5)

        # Log in to the sandbox Salesforce exactly as the dialog would.
        browser = make_session(ca)  # REQUESTS_CA_BUNDLE would override a plain session's verify
        start = browser.get(f"https://localhost:3000/auth/salesforce/start?pane_challenge={PANE_CHALLENGE}",
                            allow_redirects=False)
        assert start.status_code == 302 and start.headers["Location"].startswith("https://localhost:3001/")
        page = browser.get(start.headers["Location"])
        grant = re.search(r'name="grant" value="([^"]+)"', page.text)
        assert grant
        approved = browser.post("https://localhost:3001/services/oauth2/authorize/approve", allow_redirects=False,
                                data={"grant": grant.group(1), "username": DEMO_USER, "pw": DEMO_PASSWORD,
                                      "action": "allow"})
        callback = approved.headers["Location"]
        assert urlsplit(callback).netloc == "localhost:3000"
        done = browser.get(callback)
        code = dialog_payload(done.text)["code"]
        session = browser.post("https://localhost:3000/api/session", json={"code": code, "mailbox": DEMO_USER,
                                                                                  "verifier": PANE_VERIFIER})
        assert session.status_code == 201, session.text + _drain(proc)
        token = session.json()["token"]
        me = browser.get("https://localhost:3000/api/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert me["salesforce"]["username"] == DEMO_USER
        assert me["mailbox"]["verified"] is False  # development: no proof required, and it says so

        # Connect the sandbox Exchange mailbox (Autodiscover) and let the worker sync it.
        auth = {"Authorization": f"Bearer {token}"}
        connected = browser.post("https://localhost:3000/api/sync/exchange", headers=auth,
                                 json={"login": DEMO_USER, "password": DEMO_PASSWORD})
        assert connected.status_code == 200, connected.text
        assert connected.json()["state"] == "running"
        deadline = time.monotonic() + 90
        while True:
            sync = browser.get("https://localhost:3000/api/sync", headers=auth).json()
            if sync["last_run"] and sync["last_run"].get("finished_at"):
                break
            assert time.monotonic() < deadline, f"no run finished: {sync}"
            time.sleep(1)
        counts = sync["last_run"]["counts"]
        # Three demo emails with sandbox contacts and leads are logged; the free-mail one is not.
        assert sync["last_run"]["error"] is None, sync["last_run"]
        assert counts["emails_written"] == 3 and counts["filtered"] >= 1, counts

        # Switch to the sandbox Gmail by consent: the same demo mail and meeting, so nothing is logged twice.
        first_run = sync["last_run"]["id"]
        dialog = browser.post("https://localhost:3000/api/dialog", headers=auth, json={"provider": "google"})
        assert dialog.status_code == 200, dialog.text
        to_google = browser.get(dialog.json()["url"], allow_redirects=False)
        assert to_google.status_code == 302 and to_google.headers["Location"].startswith("https://localhost:3005/")
        consent = browser.get(to_google.headers["Location"])
        grant = re.search(r'name="grant" value="([^"]+)"', consent.text)
        assert grant, consent.text
        allowed = browser.post("https://localhost:3005/o/oauth2/v2/auth/approve", allow_redirects=False,
                               data={"grant": grant.group(1), "username": DEMO_USER, "action": "accept"})
        assert dialog_payload(browser.get(allowed.headers["Location"]).text)["status"] == "ok"
        deadline = time.monotonic() + 90
        while True:
            sync = browser.get("https://localhost:3000/api/sync", headers=auth).json()
            last = sync["last_run"]
            if last and last["id"] != first_run and last.get("finished_at"):
                break
            assert time.monotonic() < deadline, f"no Gmail run finished: {sync}"
            time.sleep(1)
        assert sync["provider"] == "google" and last["error"] is None, last
        assert last["counts"]["written"] == 0 and last["counts"]["duplicates"] >= 3, last["counts"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    for port in PORTS:
        assert not _port_open(port), f"port {port} still open after stopping"
    assert not (ROOT / "var" / "redis" / "redis.sock").exists(), "the embedded Redis was left running"
