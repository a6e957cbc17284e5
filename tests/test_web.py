"""Pages, headers and health: framed by Outlook on the web, no inline script, Redis checked."""

from __future__ import annotations

import re
from typing import Any

import redis
from flask import Flask
from flask.testing import FlaskClient
from redis._parsers import _HiredisParser
from redis.connection import HiredisRespSerializer

from backend import create_app
from sandbox.login import PANE_CHALLENGE
from sandbox.redis_server import free_port


def test_taskpane_can_be_framed_by_outlook_only(client: FlaskClient) -> None:
    resp = client.get("/taskpane.html")
    assert resp.status_code == 200
    assert "X-Frame-Options" not in resp.headers
    csp = resp.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    ancestors = directives["frame-ancestors"].split()
    assert "https://outlook.office.com" in ancestors and "https://outlook.office365.com" in ancestors
    assert "*" not in ancestors and "https:" not in ancestors
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "https://appsforoffice.microsoft.com" in directives["script-src"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_taskpane_has_no_inline_script(client: FlaskClient) -> None:
    page = client.get("/taskpane.html").get_data(as_text=True)
    for attrs, body in re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S):
        assert "src=" in attrs and not body.strip(), f"inline script: {attrs} {body[:80]}"
    assert not re.search(r"\son[a-z]+\s*=", page), "inline event handler"
    assert "style=" not in page


def test_static_files_outside_the_pane_folders_are_not_served(client: FlaskClient) -> None:
    assert client.get("/backend/config.py").status_code == 404
    assert client.get("/js/../../backend/config.py").status_code == 404


def test_healthz_ok(client: FlaskClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json is not None
    assert (resp.json["status"], resp.json["redis"]) == ("ok", "ok")


def test_healthz_503_when_redis_is_down(app_config: dict[str, Any], redis_client: redis.Redis) -> None:
    app = create_app({**app_config, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 503 and resp.json == {"status": "error", "redis": "unreachable"}


def test_the_apps_redis_clients_parse_and_pack_in_c(app: Flask) -> None:
    """hiredis: redis-py's pure-Python packing of a batch's claim and trail keys was a tenth of a run's CPU."""
    from backend.extensions import EXTENSION_KEY

    services = app.extensions[EXTENSION_KEY]
    for client in (services.redis, services.redis_raw):
        connection = client.connection_pool.get_connection()
        try:
            assert isinstance(connection._command_packer, HiredisRespSerializer)
            assert isinstance(connection._parser, _HiredisParser)
        finally:
            client.connection_pool.release(connection)


def test_dialog_session_cookie_is_secure_httponly_samesite_none_partitioned(client: FlaskClient) -> None:
    resp = client.get(f"/auth/salesforce/start?pane_challenge={PANE_CHALLENGE}")
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith("ss_dialog="))
    lowered = cookie.lower()
    assert "secure" in lowered and "httponly" in lowered and "samesite=none" in lowered and "partitioned" in lowered


def test_the_vendored_msal_named_in_the_config_is_served_and_has_naa(client: FlaskClient) -> None:
    url = client.get("/api/config").json["naa"]["msal_url"]  # type: ignore[index]
    resp = client.get(url)
    assert resp.status_code == 200
    assert b"createNestablePublicClientApplication" in resp.data
