"""The Outlook add-in XML manifest, rendered for one base URL from one template.

``addin_manifest/manifest.xml`` (production) and ``addin_manifest/manifest-localhost.xml``
(https://localhost:3000) are both outputs of :func:`render_manifest` (``flask manifest render``),
so they cannot drift apart; ``tests/test_manifest.py`` checks the committed files against it.

Production and localhost renderings differ only where they must: the URLs, and for a loopback host
the add-in id and display name. The localhost add-in gets its own id (derived from ``ADDIN_ID``)
and the name "Sidebar Sync (localhost)", so a developer can sideload it next to the production
add-in and tell the two apart in the ribbon.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from backend.config import Settings

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
TEMPLATE_NAME = "manifest.xml.j2"

# Outlook compares <Version> when an admin deploys an updated manifest: raise it whenever the
# template changes in a way users should receive (four dot-separated numbers at most).
MANIFEST_VERSION = "1.0.0.0"
PRODUCT_NAME = "Sidebar Sync"
LOCAL_SUFFIX = " (localhost)"
# Hosts that mean "a developer's machine": the manifest gets the derived id and the local name.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})

# Sizes Office asks for: 16/32/80 px for ribbon buttons, 64 px IconUrl, 128 px HighResolutionIconUrl.
BUTTON_ICON_SIZES = (16, 32, 80)
ICON_SIZES = (16, 32, 64, 80, 128)
ICON_PATH = "/img/icon-{size}.png"  # served by backend/web.py from taskpane_static/img/
TASKPANE_PATH = "/taskpane.html"

# Sign-in hosts the add-in sends people to: Salesforce production and sandbox logins, Microsoft
# identity platform, Google accounts. AppDomain values take no wildcards, so an org's My Domain
# (https://acme.my.salesforce.com) can only be added explicitly, through ADDIN_APP_DOMAINS.
SIGN_IN_ORIGINS = (
    "https://login.salesforce.com",
    "https://test.salesforce.com",
    "https://login.microsoftonline.com",
    "https://accounts.google.com",
)
# WebApplicationInfo scopes: openid and profile are what an add-in that calls no Graph API from the
# pane needs; Graph permissions for sync are consented to in the Microsoft sign-in dialog instead.
NAA_MANIFEST_SCOPES = ("openid", "profile")

# (extension point, id prefix, pinnable). Pinning keeps the pane open while the person moves from
# message to message, which suits a mailbox-level sidebar. Outlook supports it in message read and
# compose, not for appointments/meetings (learn.microsoft.com/office/dev/add-ins/outlook/
# pinnable-taskpane), so the appointment surfaces leave it out.
SURFACES = (
    ("MessageReadCommandSurface", "msgRead", True),
    ("MessageComposeCommandSurface", "msgCompose", True),
    ("AppointmentAttendeeCommandSurface", "apptAttendee", False),
    ("AppointmentOrganizerCommandSurface", "apptOrganizer", False),
)

_DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_IPV4 = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")


class ManifestError(ValueError):
    """The manifest cannot be rendered for this input; the message says what to fix."""


class BaseUrlError(ManifestError):
    """The base URL is not an https origin."""


def normalise_base_url(raw: str) -> str:
    """The https origin ``raw`` names, as ``https://host[:port]``; BaseUrlError when it is not one."""
    if not isinstance(raw, str) or not raw:
        raise BaseUrlError("the base URL is empty; give the https origin that serves the task pane")
    if any(c.isspace() or ord(c) < 32 for c in raw):
        raise BaseUrlError(f"the base URL must not contain spaces or control characters (got {raw!r})")
    if "?" in raw or "#" in raw:
        raise BaseUrlError(f"the base URL must not have a query or fragment (got {raw!r})")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise BaseUrlError(f"the base URL is not a valid URL (got {raw!r})") from None
    if parts.scheme.lower() != "https":
        # Office loads add-in pages over https only.
        raise BaseUrlError(f"the base URL must start with https:// (got {raw!r})")
    if parts.username is not None or parts.password is not None:
        raise BaseUrlError(f"the base URL must not contain a user name or password (got {raw!r})")
    if parts.path not in ("", "/"):
        # Every path in the manifest is absolute from the origin (/taskpane.html, /img/...).
        raise BaseUrlError(f"the base URL must be an origin without a path (got {raw!r})")
    host = (parts.hostname or "").lower()
    if not host or not (_DNS_NAME.match(host) or _IPV4.match(host)):
        raise BaseUrlError(f"the base URL needs a valid host name (got {raw!r})")
    if host.replace(".", "").isdigit() and not _IPV4.match(host):
        raise BaseUrlError(f"the base URL needs a valid host name (got {raw!r})")
    if port == 0:
        raise BaseUrlError(f"the base URL has an invalid port (got {raw!r})")
    netloc = host if port in (None, 443) else f"{host}:{port}"
    return f"https://{netloc}"


def is_local(base_url: str) -> bool:
    """True when ``base_url`` (normalised) points at the developer's own machine."""
    host = urlsplit(base_url).hostname or ""
    return host in LOCAL_HOSTS or host.endswith(".localhost")


def addin_id(base_url: str, settings: Settings) -> str:
    """The manifest <Id> for ``base_url``: ADDIN_ID, or for a loopback host a fixed id derived from it."""
    root = uuid.UUID(settings.ADDIN_ID)
    if is_local(base_url):
        # uuid5 is deterministic: the localhost add-in keeps one id across renders and machines.
        return str(uuid.uuid5(root, "localhost"))
    return str(root)


def app_domains(base_url: str, settings: Settings) -> list[str]:
    """AppDomain values: the add-in's own origin, the sign-in hosts, then ADDIN_APP_DOMAINS."""
    extra = []
    for origin in settings.ADDIN_APP_DOMAINS:
        try:
            extra.append(normalise_base_url(origin))
        except BaseUrlError as exc:
            raise ManifestError(f"ADDIN_APP_DOMAINS entry {origin!r} is not an https origin: {exc}") from None
    return list(dict.fromkeys([base_url, *SIGN_IN_ORIGINS, *extra]))


def _naa(base_url: str, settings: Settings) -> dict[str, Any] | None:
    """The WebApplicationInfo values, or None when no Entra ID app is configured."""
    client_id = settings.MS_CLIENT_ID
    if not client_id:
        return None
    try:
        client_id = str(uuid.UUID(client_id))
    except ValueError:
        raise ManifestError(
            f"MS_CLIENT_ID must be the Entra ID application (client) id, a GUID (got {client_id!r})"
        ) from None
    host = urlsplit(base_url).netloc
    return {
        "client_id": client_id,
        "resource": f"api://{host}/{client_id}",
        "scopes": NAA_MANIFEST_SCOPES,
    }


def _environment() -> Environment:
    # Autoescape everything: every value lands in XML text or a double-quoted attribute.
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render_manifest(base_url: str, settings: Settings) -> str:
    """The Outlook XML manifest for the task pane served at ``base_url`` (an https origin)."""
    base = normalise_base_url(base_url)
    local = is_local(base)
    context = {
        "base": base,
        "addin_id": addin_id(base, settings),
        "version": MANIFEST_VERSION,
        "provider": PRODUCT_NAME,
        "display_name": PRODUCT_NAME + (LOCAL_SUFFIX if local else ""),
        "description": "Logs your emails and meetings in Salesforce every 30 minutes, "
                       "and shows the sync state of this mailbox.",
        "icons": {size: base + ICON_PATH.format(size=size) for size in ICON_SIZES},
        "button_icon_sizes": BUTTON_ICON_SIZES,
        "support_url": base + "/",
        "taskpane_url": base + TASKPANE_PATH,
        "app_domains": app_domains(base, settings),
        "surfaces": [{"type": t, "prefix": p, "pinning": pin} for t, p, pin in SURFACES],
        "group_label": PRODUCT_NAME + (LOCAL_SUFFIX if local else ""),
        "button_label": "Sidebar Sync",
        "button_title": "Open Sidebar Sync",
        "button_tooltip": "Log in to Salesforce, set up sync for this mailbox and see when your emails "
                          "and meetings were last logged.",
        "naa": _naa(base, settings),
    }
    return _environment().get_template(TEMPLATE_NAME).render(**context)
