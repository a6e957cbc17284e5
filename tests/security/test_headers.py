"""Response headers and cookies: CSP and framing, nosniff, Referrer-Policy, HSTS (behind a proxy too), cookie flags.

Behaviour behind a TLS-terminating proxy, as built (no ProxyFix): the app never reads
``X-Forwarded-*``. It needs not: ``Strict-Transport-Security`` is sent on every response whatever
the scheme the app saw, every cookie is set ``Secure`` explicitly, and every absolute URL (OAuth
redirect URIs, the console's links) comes from ``PUBLIC_BASE_URL``, never from the request's host,
so a forged ``X-Forwarded-Host`` changes nothing. HSTS has no ``includeSubDomains``: the pane's
host may share a parent domain with sites the deployment does not run on https.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.auth.console import COOKIE as CONSOLE_COOKIE
from sandbox.https_client import PUBLIC_BASE_URL
from sandbox.login import PANE_CHALLENGE, login
from sandbox.tls import TestCA
from tests.admin.helpers import console_login

OUTLOOK = "https://outlook.office.com"
DIALOG_COOKIE = "ss_dialog"


class CookieRecorder:
    """A WSGI wrapper keeping every ``Set-Cookie`` the app sends (the session interface's too)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.cookies: list[tuple[str, str]] = []  # (path requested, Set-Cookie value)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Pass the request on, noting the cookies of its answer."""
        def recording(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            self.cookies.extend((environ.get("PATH_INFO", ""), v) for k, v in headers if k.lower() == "set-cookie")
            return start_response(status, headers, *args)

        return self.app(environ, recording)


@pytest.fixture
def cookies(app: Flask) -> Iterator[CookieRecorder]:
    """Every cookie the app sets during the test."""
    recorder = CookieRecorder(app.wsgi_app)
    app.wsgi_app = recorder  # type: ignore[method-assign]
    yield recorder


def _pairs(parts: Iterable[str], sep: str) -> dict[str, str]:
    """``name<sep>value`` parts as a dict (a bare name has the value "")."""
    found = {}
    for part in (p.strip() for p in parts):
        if part:
            name, _, value = part.partition(sep)
            found[name] = value
    return found


def _directives(csp: str) -> dict[str, str]:
    return _pairs(csp.split(";"), " ")


def _attributes(cookie: str) -> tuple[str, dict[str, str]]:
    name_value, *attrs = cookie.split(";")
    return name_value.split("=", 1)[0], {k.lower(): v for k, v in _pairs(attrs, "=").items()}


# --- framing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/taskpane.html", "/api/config", "/healthz"])
def test_pane_pages_may_be_framed_by_outlook_only(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 200
    assert "X-Frame-Options" not in resp.headers  # OWA frames the pane: XFO would forbid it
    csp = _directives(resp.headers["Content-Security-Policy"])
    ancestors = csp["frame-ancestors"].split()
    assert OUTLOOK in ancestors and "'self'" in ancestors
    assert not {"*", "https:", "http:", "'none'"} & set(ancestors)
    assert all(a == "'self'" or a.startswith("https://") for a in ancestors)
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    assert (csp["object-src"], csp["base-uri"]) == ("'none'", "'none'")


@pytest.mark.parametrize("path", ["/admin", "/admin/login"])
def test_the_console_may_be_framed_by_nobody(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code in (200, 302)
    assert _directives(resp.headers["Content-Security-Policy"])["frame-ancestors"] == "'none'"
    assert resp.headers["X-Frame-Options"] == "DENY"


# --- on every response -------------------------------------------------------------------------------


def _every_kind(client: FlaskClient, token: str) -> dict[str, Any]:
    """One response of each kind: pages, static files, JSON, errors, redirects, hooks, metrics."""
    bearer = {"Authorization": f"Bearer {token}"}
    return {
        "pane page": client.get("/taskpane.html"),
        "static file": client.get(client.get("/api/config").json["naa"]["msal_url"]),  # type: ignore[index]
        "health": client.get("/healthz"),
        "api json": client.get("/api/me", headers=bearer),
        "api 401": client.get("/api/me"),
        "api 404": client.get("/api/nothing-here"),
        "api 405": client.delete("/api/config"),
        "api 400": client.post("/api/session", json={"code": 1}),
        "page 404": client.get("/no/such/page.html"),
        "redirect": client.get("/admin/login"),
        "hook": client.post("/hooks/graph?validationToken=abc"),
        "metrics (off)": client.get("/metrics"),
        "openapi": client.get("/api/openapi.json"),
        "dialog start": client.get(f"/auth/salesforce/start?pane_challenge={PANE_CHALLENGE}"),  # last: a cookie
    }


def test_every_response_has_nosniff_referrer_policy_hsts_and_a_csp(client: FlaskClient, ca: TestCA) -> None:
    answers = _every_kind(client, login(client, ca.ca_path).token)
    missing = {kind: [h for h in ("X-Content-Type-Options", "Referrer-Policy", "Strict-Transport-Security",
                                  "Content-Security-Policy") if h not in resp.headers]
               for kind, resp in answers.items()}
    assert missing == {kind: [] for kind in answers}
    for kind, resp in answers.items():
        assert resp.headers["X-Content-Type-Options"] == "nosniff", kind
        assert resp.headers["Referrer-Policy"] in ("strict-origin-when-cross-origin", "no-referrer"), kind
        hsts = _pairs(resp.headers["Strict-Transport-Security"].split(";"), "=")
        assert int(hsts["max-age"]) >= 180 * 24 * 3600, kind


@pytest.mark.parametrize("forwarded", [{}, {"X-Forwarded-Proto": "https"},
                                       {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
                                        "X-Forwarded-For": "203.0.113.9"}])
def test_behind_a_tls_terminating_proxy(app: Flask, forwarded: dict[str, str]) -> None:
    # The proxy speaks plain http to the app (the scheme the app sees is http).
    proxied = app.test_client()  # not the https test client
    resp = proxied.get("/taskpane.html", base_url="http://10.0.0.5:8000", headers=forwarded)
    assert resp.status_code == 200
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    # The dialog's cookie is Secure whatever the scheme seen, and the OAuth redirect URI is the public one.
    start = proxied.get(f"/auth/salesforce/start?pane_challenge={PANE_CHALLENGE}", base_url="http://10.0.0.5:8000",
                        headers={**forwarded, "Host": "evil.example"})
    assert start.status_code == 302, start.get_data(as_text=True)
    (redirect_uri,) = parse_qs(urlsplit(start.headers["Location"]).query)["redirect_uri"]
    assert redirect_uri.startswith(PUBLIC_BASE_URL + "/")
    dialog = next(c for c in start.headers.getlist("Set-Cookie") if c.startswith(DIALOG_COOKIE + "="))
    assert "secure" in _attributes(dialog)[1]


# --- cookies -------------------------------------------------------------------------------------


def test_every_cookie_the_app_sets_is_secure_httponly_and_samesite(app: Flask, client: FlaskClient, ca: TestCA,
                                                                   cookies: CookieRecorder,
                                                                   fake_salesforce: Any) -> None:
    fake_salesforce.state.users["alice@acme.example"].is_admin = True
    pane = login(client, ca.ca_path)  # the Salesforce dialog
    ms = client.post("/api/dialog", json={"provider": "microsoft"}, headers={"Authorization": f"Bearer {pane.token}"})
    assert ms.status_code == 200, ms.get_data(as_text=True)
    assert client.get(urlsplit(ms.json["url"]).path + "?" + urlsplit(ms.json["url"]).query).status_code == 302
    console = app.test_client()
    csrf = console_login(console, ca.ca_path, "alice@acme.example", "alice-pw")
    assert console.post("/admin/logout", headers={"X-CSRF-Token": csrf}).status_code in (200, 204, 302, 303)
    _every_kind(app.test_client(), pane.token)  # as the pane calls: no cookie of its own
    seen: dict[str, list[dict[str, str]]] = {}
    for path, cookie in cookies.cookies:
        name, attrs = _attributes(cookie)
        seen.setdefault(name, []).append(attrs)
        assert "secure" in attrs and "httponly" in attrs, (path, cookie)
        assert attrs.get("samesite", "").lower() in ("lax", "strict", "none"), (path, cookie)
        # The pane's API answers bearer calls: it never starts a cookie (the dialog's client refreshes its own).
        assert not path.startswith("/api/") or path in {"/api/dialog", "/api/session"}, (path, cookie)
    # The two cookies there are, each set (and the console's cleared) along the way.
    assert set(seen) == {DIALOG_COOKIE, CONSOLE_COOKIE}, seen
    for attrs in seen[CONSOLE_COOKIE]:
        # __Host-: Secure, Path=/ and no Domain (browsers refuse it otherwise); Lax: a top-level page.
        assert CONSOLE_COOKIE.startswith("__Host-") and attrs.get("path") == "/" and "domain" not in attrs, attrs
        assert attrs["samesite"].lower() == "lax", attrs
    for attrs in seen[DIALOG_COOKIE]:
        # The dialog may be shown where its cookie is third-party: SameSite=None needs Secure, and CHIPS.
        assert attrs["samesite"].lower() == "none" and "partitioned" in attrs and "domain" not in attrs, attrs
    assert any("expires" in a or "max-age" in a for a in seen[CONSOLE_COOKIE])
    assert len(seen[CONSOLE_COOKIE]) >= 2  # set at sign-in, cleared at logout
