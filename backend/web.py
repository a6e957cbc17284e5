"""The task pane's static files, the health check, and the security headers of every response.

Outlook on the web shows the task pane in a frame, so pane pages carry no X-Frame-Options; a
Content-Security-Policy with ``frame-ancestors`` admits the Outlook and Office hosts instead.
There is no inline script anywhere: ``script-src`` lists our origin and Microsoft's CDNs only.
"""

from __future__ import annotations

import hmac
import os
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Blueprint, Flask, Response, abort, jsonify, request, send_from_directory

from backend.extensions import QUEUE_NAMES, Services, services
from backend.observability.metrics import ScrapeGauge, exposition

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "taskpane_static")
# Hosts that frame the task pane in Outlook on the web and the Office web apps.
FRAME_ANCESTORS = (
    "'self'",
    "https://outlook.office.com",
    "https://outlook.office365.com",
    "https://outlook.live.com",
    "https://*.outlook.com",
    "https://*.office.com",
    "https://*.office365.com",
    "https://*.microsoft.com",
    "https://*.cloud.microsoft",
    "https://*.officeapps.live.com",
)
# /healthz answers 503 when the clock has not ticked for this long (it ticks every minute).
CLOCK_LATE_SECONDS = 180
# office.js and MSAL.js come from Microsoft's CDNs.
SCRIPT_HOSTS = ("https://appsforoffice.microsoft.com", "https://alcdn.msauth.net")
_STATIC_DIRS = {"js", "css", "img", "assets"}

bp = Blueprint("web", __name__)


def content_security_policy(app: Flask) -> str:
    """The CSP for every page we serve."""
    settings = services().settings
    authority = urlsplit(settings.MS_AUTHORITY)
    connect = ["'self'", "https://login.microsoftonline.com", f"{authority.scheme}://{authority.netloc}"]
    return "; ".join([
        "default-src 'self'",
        "script-src 'self' " + " ".join(SCRIPT_HOSTS),
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src " + " ".join(dict.fromkeys(connect)),
        "frame-src 'self' https://login.microsoftonline.com",
        "frame-ancestors " + " ".join(FRAME_ANCESTORS),
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
    ])


def add_security_headers(app: Flask) -> None:
    """Security headers on every response."""
    csp_cache: dict[str, str] = {}

    @app.after_request
    def _headers(resp: Response) -> Response:
        if "csp" not in csp_cache:
            csp_cache["csp"] = content_security_policy(app)
        resp.headers["Content-Security-Policy"] = csp_cache["csp"]
        if request.path == "/admin" or request.path.startswith("/admin/"):
            # The console is a top-level page: nothing may frame it.
            resp.headers["Content-Security-Policy"] = csp_cache["csp"].replace(
                "frame-ancestors " + " ".join(FRAME_ANCESTORS), "frame-ancestors 'none'")
            resp.headers["X-Frame-Options"] = "DENY"
            return _common(resp)
        resp.headers.pop("X-Frame-Options", None)
        return _common(resp)

    def _common(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
        resp.headers["Strict-Transport-Security"] = "max-age=31536000"
        return resp


@bp.get("/")
def index() -> Any:
    """The task pane (so a bare origin works in a browser)."""
    return taskpane()


@bp.get("/taskpane.html")
def taskpane() -> Any:
    """The task pane page."""
    return html_page("taskpane.html")


def html_page(name: str) -> Response:
    """One of our HTML pages, revalidated on every load so a deploy shows at once."""
    resp = send_from_directory(STATIC_DIR, name, max_age=0)
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@bp.get("/<folder>/<path:filename>")
def static_file(folder: str, filename: str) -> Any:
    """Scripts, styles and images of the task pane."""
    if folder not in _STATIC_DIRS:
        abort(404)
    resp = send_from_directory(os.path.join(STATIC_DIR, folder), filename, max_age=300)
    return resp


def clock_and_lag(svc: Services, now: float) -> tuple[float | None, float]:
    """The clock's last tick and the queue lag (how overdue the most overdue mailbox is), one round trip."""
    last_tick, first_due = svc.store.schedule.health()
    return last_tick, max(0.0, now - first_due) if first_due is not None else 0.0


@bp.get("/healthz")
def healthz() -> Any:
    """Redis, the clock's last tick, the queue lag; 503: Redis down, clock late or lag over an interval.

    A clock that never ticked (a deployment's first minute) is reported as ``never``, not a failure.
    """
    svc = services()
    try:
        svc.redis.ping()
        now = time.time()
        last_tick, lag = clock_and_lag(svc, now)
    except (redis.RedisError, OSError):
        return jsonify({"status": "error", "redis": "unreachable"}), 503
    age = None if last_tick is None else max(0.0, now - last_tick)
    clock = "never" if age is None else ("late" if age > CLOCK_LATE_SECONDS else "ok")
    lagging = lag > svc.settings.SYNC_INTERVAL_SECONDS
    body = {
        "status": "error" if clock == "late" or lagging else "ok",
        "redis": "ok",
        "clock": clock,
        "clock_last_tick": None if last_tick is None else datetime.fromtimestamp(last_tick, UTC).isoformat(),
        "queue_lag_seconds": round(lag, 1),
        "queue_lag": "late" if lagging else "ok",
    }
    return jsonify(body), 503 if body["status"] == "error" else 200


@bp.get("/metrics")
def metrics() -> Any:
    """Prometheus text: the counters of every process, and the gauges read from Redis now (bearer METRICS_TOKEN)."""
    svc = services()
    token = svc.settings.METRICS_TOKEN
    if not token:
        abort(404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return Response("unauthorized\n", status=401, headers={"WWW-Authenticate": "Bearer"}, mimetype="text/plain")
    now = time.time()
    last_tick, lag = clock_and_lag(svc, now)
    with svc.redis_raw.pipeline(transaction=False) as pipe:
        for name in QUEUE_NAMES:
            pipe.llen(svc.queue(name).key)
        pipe.zcard(svc.store.schedule.key)
        *depths, scheduled = pipe.execute()
    gauges: list[ScrapeGauge] = [
        ("queue_depth", "Jobs waiting in each RQ queue",
         {(n,): float(d) for n, d in zip(QUEUE_NAMES, depths, strict=True)}, ("queue",)),
        ("most_overdue_seconds", "How overdue the most overdue mailbox is", {(): lag}, ()),
        ("scheduled_mailboxes", "Mailboxes on the clock's schedule", {(): float(scheduled)}, ()),
    ]
    if last_tick is not None:
        gauges.append(("clock_last_tick_timestamp_seconds", "When the clock last ticked", {(): last_tick}, ()))
    return Response(exposition(gauges), mimetype="text/plain; version=0.0.4; charset=utf-8")
