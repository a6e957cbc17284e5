"""Flask commands: ``flask keys rotate``, ``flask manifest render``, ``flask sync run-once``."""

from __future__ import annotations

import os

import click
from flask import Flask
from flask.cli import AppGroup

from backend.extensions import services
from backend.security.crypto import generate_key

keys_cli = AppGroup("keys", help="Encryption keys for secrets at rest.")
manifest_cli = AppGroup("manifest", help="The Outlook add-in manifest.")
sync_cli = AppGroup("sync", help="Sync runs.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret under the first key of ENCRYPTION_KEYS."""
    rotated, unreadable = services().store.secrets.rotate_all()
    click.echo(f"re-encrypted {rotated} secret(s) under the current key")
    if unreadable:
        click.echo(f"{unreadable} secret(s) could not be decrypted with any configured key", err=True)
        raise SystemExit(1)


@keys_cli.command("generate")
def keys_generate() -> None:
    """Print a new key to put first in ENCRYPTION_KEYS."""
    click.echo(generate_key())


@manifest_cli.command("render")
@click.option("--base-url", required=True, help="https origin serving the task pane, e.g. https://localhost:3000")
@click.option("--out", "out", default=None, help="File to write (default: stdout)")
def manifest_render(base_url: str, out: str | None) -> None:
    """Render the Outlook XML manifest for BASE_URL from the one template."""
    from backend.manifest import BaseUrlError, ManifestError, render_manifest

    try:
        xml = render_manifest(base_url, services().settings)
    except BaseUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--base-url") from None
    except ManifestError as exc:  # a setting the manifest needs is malformed
        raise click.ClickException(str(exc)) from None
    if out:
        with open(out, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(xml)
        click.echo(f"wrote {out}")
    else:
        click.echo(xml, nl=False)


@sync_cli.command("run-once")
@click.argument("mailbox_id")
def sync_run_once(mailbox_id: str) -> None:
    """Run sync once for MAILBOX_ID in this process (no queue) and print the run record."""
    import json

    from backend.sync.engine import run_mailbox

    click.echo(json.dumps(run_mailbox(mailbox_id), indent=2, default=str))


def register_commands(app: Flask) -> None:
    """Attach the command groups to ``app``."""
    app.cli.add_command(keys_cli)
    app.cli.add_command(manifest_cli)
    app.cli.add_command(sync_cli)
