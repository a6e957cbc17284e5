"""The Outlook XML manifest: one template, two committed renderings that cannot drift, schema-valid.

The schema check runs Microsoft's XSDs through the offline validator kept outside this repository
(``OFFICE_MANIFEST_SCHEMA_DIR``, default ``../shared/office-manifest-schema`` next to the checkout); those tests are
skipped, saying so, where it is absent.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

from backend.config import ConfigError, Settings
from backend.manifest import (
    ICON_SIZES,
    SIGN_IN_ORIGINS,
    BaseUrlError,
    ManifestError,
    normalise_base_url,
    render_manifest,
)

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_DIR = ROOT / "addin_manifest"
STATIC_DIR = ROOT / "taskpane_static"
PRODUCTION_BASE = "https://sidebar-sync.example.com"
LOCAL_BASE = "https://localhost:3000"
COMMITTED = (
    ("manifest.xml", PRODUCTION_BASE),
    ("manifest-localhost.xml", LOCAL_BASE),
)
# The steering repository's shared/ folder: next to this checkout (as the before-stop hook expects),
# or at its place on the build machines when CI clones elsewhere.
_SCHEMA_CANDIDATES = [
    *([Path(os.environ["OFFICE_MANIFEST_SCHEMA_DIR"])] if os.environ.get("OFFICE_MANIFEST_SCHEMA_DIR") else []),
    ROOT.parent / "shared" / "office-manifest-schema",
    Path("/work/shared/office-manifest-schema"),
]
SCHEMA_DIR = next((p for p in _SCHEMA_CANDIDATES if (p / "validate_manifest.py").is_file()), _SCHEMA_CANDIDATES[0])
VALIDATOR = SCHEMA_DIR / "validate_manifest.py"
ENTRA_APP_ID = "11111111-2222-3333-4444-555555555555"

NS = {
    "o": "http://schemas.microsoft.com/office/appforoffice/1.1",
    "bt": "http://schemas.microsoft.com/office/officeappbasictypes/1.0",
    "v10": "http://schemas.microsoft.com/office/mailappversionoverrides",
    "v11": "http://schemas.microsoft.com/office/mailappversionoverrides/1.1",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
XSI_TYPE = f"{{{NS['xsi']}}}type"


def _settings(**overrides: Any) -> Settings:
    """The settings the committed files are rendered with (defaults, no Entra app), plus overrides."""
    return Settings.load({"SIDEBAR_ENV": "development", **overrides})


def _parse(xml: str) -> ET.Element:
    # Our own rendering, not untrusted input (and it has no DTD or entities).
    return ET.fromstring(xml.encode("utf-8"))  # noqa: S314


def _v11(root: ET.Element) -> ET.Element:
    node = root.find("v10:VersionOverrides/v11:VersionOverrides", NS)
    assert node is not None, "VersionOverrides 1.1 must be nested in VersionOverrides 1.0"
    return node


def _validate(path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    if not VALIDATOR.is_file():
        pytest.skip(f"offline Office manifest validator not found at {VALIDATOR} (set OFFICE_MANIFEST_SCHEMA_DIR)")
    return subprocess.run(
        [sys.executable, str(VALIDATOR), *flags, str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (refusing anything that is not a PNG)."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path} has no IHDR first"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- the committed files ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "base"), COMMITTED)
def test_committed_manifest_is_what_the_template_renders(name: str, base: str) -> None:
    """Editing the template without re-rendering (or editing a rendering by hand) fails here."""
    committed = (MANIFEST_DIR / name).read_text(encoding="utf-8")
    assert committed == render_manifest(base, _settings()), (
        f"addin_manifest/{name} is stale: run `flask --app backend manifest render --base-url {base} "
        f"--out addin_manifest/{name}`"
    )


@pytest.mark.parametrize(("name", "base"), COMMITTED)
def test_committed_manifest_is_a_well_formed_mail_app(name: str, base: str) -> None:
    """Well-formed XML, a MailApp asking for ReadWriteMailbox, opening the pane from the ribbon."""
    root = _parse((MANIFEST_DIR / name).read_text(encoding="utf-8"))
    assert root.tag == f"{{{NS['o']}}}OfficeApp"
    assert root.get(XSI_TYPE) == "MailApp"
    assert root.findtext("o:Permissions", namespaces=NS) == "ReadWriteMailbox"
    v11 = _v11(root)
    surfaces = [ep.get(XSI_TYPE) for ep in v11.iterfind(".//v11:ExtensionPoint", NS)]
    assert surfaces == [
        "MessageReadCommandSurface",
        "MessageComposeCommandSurface",
        "AppointmentAttendeeCommandSurface",
        "AppointmentOrganizerCommandSurface",
    ]
    urls = {u.get("id"): u.get("DefaultValue") for u in v11.iterfind(".//bt:Url", NS)}
    for action in v11.iterfind(".//v11:Action", NS):
        assert action.get(XSI_TYPE) == "ShowTaskpane"
        source = action.find("v11:SourceLocation", NS)
        assert source is not None
        assert urls[source.get("resid")] == f"{base}/taskpane.html"
    sets = v11.find("v11:Requirements/bt:Sets", NS)
    assert sets is not None and sets.get("DefaultMinVersion") == "1.5"
    assert [s.get("Name") for s in sets] == ["Mailbox"]


@pytest.mark.parametrize(("name", "base"), COMMITTED)
def test_committed_manifest_passes_the_office_schema(name: str, base: str) -> None:
    """Valid against Microsoft's XSDs, strictly: nothing newer than the bundled schemas is used."""
    result = _validate(MANIFEST_DIR / name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "valid"
    stripped = _validate(MANIFEST_DIR / name, "--strip-newer")
    assert stripped.returncode == 0 and "note:" not in stripped.stderr, stripped.stdout + stripped.stderr


def test_the_schema_check_catches_a_broken_manifest(tmp_path: Path) -> None:
    """The validator is not vacuous: an element out of schema order is refused."""
    xml = render_manifest(LOCAL_BASE, _settings())
    permissions = "  <Permissions>ReadWriteMailbox</Permissions>\n"
    assert permissions in xml
    broken = xml.replace(permissions, "").replace("  <Hosts>\n", permissions + "  <Hosts>\n", 1)
    path = tmp_path / "broken.xml"
    path.write_text(broken, encoding="utf-8")
    result = _validate(path, "--strip-newer")
    assert result.returncode == 1, result.stdout
    assert "Permissions" in result.stdout


@pytest.mark.parametrize(("name", "base"), COMMITTED)
def test_every_url_in_the_manifest_starts_with_the_base_url(name: str, base: str) -> None:
    """Icons, pane and support URLs all live on the base origin; only AppDomains name others."""
    root = _parse((MANIFEST_DIR / name).read_text(encoding="utf-8"))
    app_domains = {d.text for d in root.iterfind("o:AppDomains/o:AppDomain", NS)}
    found = []
    for el in root.iter():
        values = [v for v in el.attrib.values() if "://" in v]
        if el.text and "://" in el.text and el.tag != f"{{{NS['o']}}}AppDomain":
            values.append(el.text.strip())
        found += values
    assert found, "no URL found at all"
    for value in found:
        if value.startswith("http://schemas.microsoft.com/") or value.startswith("http://www.w3.org/"):
            continue  # namespace names in xsi:type values, not URLs the client loads
        assert value.startswith(base + "/"), value
    assert app_domains == {base, *SIGN_IN_ORIGINS}
    for origin in app_domains:
        assert origin and "*" not in origin and not origin.endswith("/"), origin


@pytest.mark.parametrize(("name", "base"), COMMITTED)
def test_declared_icons_exist_with_the_declared_sizes(name: str, base: str) -> None:
    """Every icon URL maps to a PNG in taskpane_static whose header has the size the manifest says."""
    root = _parse((MANIFEST_DIR / name).read_text(encoding="utf-8"))
    v11 = _v11(root)
    images = {img.get("id"): img.get("DefaultValue") for img in v11.iterfind("v11:Resources/bt:Images/bt:Image", NS)}
    declared: list[tuple[int, str]] = []
    for icon in v11.iterfind(".//v11:Icon/bt:Image", NS):
        declared.append((int(icon.get("size", "0")), images[icon.get("resid")] or ""))
    assert {size for size, _url in declared} == {16, 32, 80}
    for tag, size in (("o:IconUrl", 64), ("o:HighResolutionIconUrl", 128)):
        node = root.find(tag, NS)
        assert node is not None
        declared.append((size, node.get("DefaultValue", "")))
    for size, url in declared:
        assert url.startswith(base + "/img/"), url
        path = STATIC_DIR / urlsplit(url).path.lstrip("/")
        assert path.is_file(), f"{url} has no file at {path}"
        assert _png_size(path) == (size, size), url
    assert {size for size, _url in declared} == set(ICON_SIZES)


def test_icons_and_pane_are_served_where_the_manifest_points(client: Any) -> None:
    """The URLs the manifest declares answer with the files (backend/web.py serves them)."""
    root = _parse(render_manifest(LOCAL_BASE, _settings()))
    urls = {img.get("DefaultValue", "") for img in root.iter(f"{{{NS['bt']}}}Image") if img.get("DefaultValue")}
    urls |= {node.get("DefaultValue", "") for node in root.iter() if node.tag.endswith("IconUrl")}
    assert len(urls) == len(ICON_SIZES)
    for url in sorted(urls):
        resp = client.get(urlsplit(url).path)
        assert resp.status_code == 200, url
        assert resp.mimetype == "image/png"
    pane = client.get("/taskpane.html")
    assert pane.status_code == 200
    assert pane.mimetype == "text/html"


# --- identity: production and localhost side by side ---------------------------------------------


def test_production_and_localhost_differ_only_in_urls_id_and_name() -> None:
    """Same add-in, two renderings: a fixed id per deployment, a derived one for localhost."""
    settings = _settings()
    production = render_manifest(PRODUCTION_BASE, settings)
    local = render_manifest(LOCAL_BASE, settings)
    prod_root, local_root = _parse(production), _parse(local)
    assert prod_root.findtext("o:Id", namespaces=NS) == settings.ADDIN_ID
    local_id = local_root.findtext("o:Id", namespaces=NS)
    assert local_id == str(uuid.uuid5(uuid.UUID(settings.ADDIN_ID), "localhost"))
    assert local_id != settings.ADDIN_ID
    display = "o:DisplayName"
    assert prod_root.find(display, NS).get("DefaultValue") == "Sidebar Sync"  # type: ignore[union-attr]
    assert local_root.find(display, NS).get("DefaultValue") == "Sidebar Sync (localhost)"  # type: ignore[union-attr]
    # Undo exactly those differences: nothing else may differ.
    normalised = (
        local.replace(LOCAL_BASE, PRODUCTION_BASE).replace(local_id, settings.ADDIN_ID)
        .replace("Sidebar Sync (localhost)", "Sidebar Sync")
    )
    assert normalised == production


def test_addin_id_comes_from_the_setting() -> None:
    """Another deployment sets its own ADDIN_ID; the localhost id follows it."""
    other = "9b2d6a51-4b8e-4a43-9d0e-3f1f7a3c2e10"
    root = _parse(render_manifest(PRODUCTION_BASE, _settings(ADDIN_ID=other)))
    assert root.findtext("o:Id", namespaces=NS) == other
    local = _parse(render_manifest(LOCAL_BASE, _settings(ADDIN_ID=other)))
    assert local.findtext("o:Id", namespaces=NS) == str(uuid.uuid5(uuid.UUID(other), "localhost"))


@pytest.mark.parametrize("bad", ["", "not-a-guid", "104bb81e-8e1c-4dc0-8f98", "{zzzzzzzz-8e1c-4dc0-8f98-40c72607b407}"])
def test_a_malformed_addin_id_stops_the_start(bad: str) -> None:
    """ADDIN_ID must be a GUID (Office refuses anything else as <Id>)."""
    with pytest.raises(ConfigError, match="ADDIN_ID"):
        _settings(ADDIN_ID=bad)


# --- base URL validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "http://sidebar-sync.example.com",
        "ftp://sidebar-sync.example.com",
        "sidebar-sync.example.com",
        "//sidebar-sync.example.com",
        "https://",
        "https://sidebar-sync.example.com/app",
        "https://sidebar-sync.example.com//",
        "https://sidebar-sync.example.com/taskpane.html",
        "https://sidebar-sync.example.com?x=1",
        "https://sidebar-sync.example.com/?",
        "https://sidebar-sync.example.com#top",
        "https://user:pw@sidebar-sync.example.com",
        " https://sidebar-sync.example.com",
        "https://sidebar-sync.example.com\n",
        "https://side bar.example.com",
        "https://sidebar_sync.example.com",
        "https://-sidebar.example.com",
        "https://sidebar-sync.example.com.",
        "https://999.1.1.1",
        "https://[::1]:3000",
        "https://localhost:0",
        "https://localhost:99999",
        "https://localhost:port",
        'https://x.example"><Evil/>',
        "javascript:alert(1)",
    ],
)
def test_bad_base_urls_are_refused(bad: str) -> None:
    """Only an https origin (no path, query, fragment, credentials) renders."""
    with pytest.raises(BaseUrlError):
        render_manifest(bad, _settings())


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://sidebar-sync.example.com", "https://sidebar-sync.example.com"),
        ("https://sidebar-sync.example.com/", "https://sidebar-sync.example.com"),
        ("HTTPS://Sidebar-Sync.Example.COM", "https://sidebar-sync.example.com"),
        ("https://sidebar-sync.example.com:443", "https://sidebar-sync.example.com"),
        ("https://localhost:3000/", "https://localhost:3000"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
    ],
)
def test_good_base_urls_are_normalised(raw: str, origin: str) -> None:
    """A trailing slash, letter case and the default port make no difference to the manifest."""
    assert normalise_base_url(raw) == origin
    assert render_manifest(raw, _settings()) == render_manifest(origin, _settings())


def test_a_host_with_double_hyphens_still_renders_valid_xml(tmp_path: Path) -> None:
    """IDNA hosts contain "--", which XML comments cannot: no value may end up inside a comment."""
    base = "https://xn--bcher-kva.example:8443"
    xml = render_manifest(base, _settings(MS_CLIENT_ID=ENTRA_APP_ID))
    root = _parse(xml)
    assert root.find("o:IconUrl", NS).get("DefaultValue") == f"{base}/img/icon-64.png"  # type: ignore[union-attr]
    path = tmp_path / "idna.xml"
    path.write_text(xml, encoding="utf-8")
    result = _validate(path)
    assert result.returncode == 0, result.stdout


# --- app domains and Nested App Authentication -----------------------------------------------------


def test_an_extra_app_domain_with_a_bad_host_is_refused_naming_the_setting() -> None:
    """A host the config check lets through but no browser would load is named, not blamed on --base-url."""
    with pytest.raises(ManifestError, match="ADDIN_APP_DOMAINS") as info:
        render_manifest(LOCAL_BASE, _settings(ADDIN_APP_DOMAINS="https://my_org.example"))
    assert not isinstance(info.value, BaseUrlError)


def test_extra_app_domains_come_from_the_setting() -> None:
    """ADDIN_APP_DOMAINS adds an org's own sign-in origin (normalised, no duplicates)."""
    settings = _settings(ADDIN_APP_DOMAINS="https://acme.my.salesforce.com/, https://login.salesforce.com")
    root = _parse(render_manifest(PRODUCTION_BASE, settings))
    domains = [d.text for d in root.iterfind("o:AppDomains/o:AppDomain", NS)]
    assert domains == [PRODUCTION_BASE, *SIGN_IN_ORIGINS, "https://acme.my.salesforce.com"]


@pytest.mark.parametrize(
    "bad",
    ["http://acme.my.salesforce.com", "https://*.my.salesforce.com", "https://acme.example/login", "acme.example"],
)
def test_bad_extra_app_domains_stop_the_start(bad: str) -> None:
    """AppDomain values are https origins without wildcards (Office ignores or refuses the rest)."""
    with pytest.raises(ConfigError, match="ADDIN_APP_DOMAINS"):
        _settings(ADDIN_APP_DOMAINS=bad)


def test_no_web_application_info_without_an_entra_app() -> None:
    """The committed manifests name no Entra app: NAA itself needs no manifest element."""
    for _name, base in COMMITTED:
        assert _v11(_parse(render_manifest(base, _settings()))).find("v11:WebApplicationInfo", NS) is None


@pytest.mark.parametrize("base", [PRODUCTION_BASE, LOCAL_BASE])
def test_web_application_info_names_the_entra_app(base: str, tmp_path: Path) -> None:
    """With MS_CLIENT_ID: Id, Resource api://{host}/{client id} and scopes, last in VersionOverrides 1.1."""
    xml = render_manifest(base, _settings(MS_CLIENT_ID=ENTRA_APP_ID.upper()))
    v11 = _v11(_parse(xml))
    info = v11.find("v11:WebApplicationInfo", NS)
    assert info is not None
    assert list(v11)[-1] is info
    assert info.findtext("v11:Id", namespaces=NS) == ENTRA_APP_ID
    assert info.findtext("v11:Resource", namespaces=NS) == f"api://{urlsplit(base).netloc}/{ENTRA_APP_ID}"
    assert [s.text for s in info.iterfind("v11:Scopes/v11:Scope", NS)] == ["openid", "profile"]
    path = tmp_path / "naa.xml"
    path.write_text(xml, encoding="utf-8")
    result = _validate(path)
    assert result.returncode == 0, result.stdout


def test_a_client_id_that_is_not_a_guid_is_refused() -> None:
    """Office wants the Entra application id (a GUID) in WebApplicationInfo."""
    with pytest.raises(ManifestError, match="MS_CLIENT_ID"):
        render_manifest(LOCAL_BASE, _settings(MS_CLIENT_ID="my-app"))


# --- the command -------------------------------------------------------------------------------------


def test_flask_manifest_render_writes_the_rendering(app: Flask, tmp_path: Path) -> None:
    """`flask manifest render --base-url URL --out FILE` writes exactly what render_manifest gives."""
    from backend.extensions import services

    out = tmp_path / "manifest.xml"
    runner = app.test_cli_runner()
    result = runner.invoke(args=["manifest", "render", "--base-url", LOCAL_BASE, "--out", str(out)])
    assert result.exit_code == 0, result.output
    with app.app_context():
        expected = render_manifest(LOCAL_BASE, services().settings)
    assert out.read_text(encoding="utf-8") == expected
    printed = runner.invoke(args=["manifest", "render", "--base-url", LOCAL_BASE])
    assert printed.exit_code == 0
    assert printed.output == expected


def test_flask_manifest_render_defaults_to_public_base_url(app: Flask, app_config: dict[str, Any]) -> None:
    """Without --base-url the deployment's PUBLIC_BASE_URL is used."""
    from backend.extensions import services

    printed = app.test_cli_runner().invoke(args=["manifest", "render"])
    assert printed.exit_code == 0, printed.output
    with app.app_context():
        assert printed.output == render_manifest(app_config["PUBLIC_BASE_URL"], services().settings)


@pytest.mark.parametrize("bad", ["http://localhost:3000", "https://localhost:3000/pane"])
def test_flask_manifest_render_refuses_a_bad_base_url(app: Flask, tmp_path: Path, bad: str) -> None:
    """A bad --base-url is a usage error naming the option, and nothing is written."""
    out = tmp_path / "manifest.xml"
    result = app.test_cli_runner().invoke(args=["manifest", "render", "--base-url", bad, "--out", str(out)])
    assert result.exit_code == 2
    assert "--base-url" in result.output
    assert not out.exists()


def test_flask_manifest_render_names_a_malformed_setting(app_config: dict[str, Any], tmp_path: Path) -> None:
    """A setting the manifest cannot use is an error naming it (exit 1), not a traceback."""
    from backend import create_app

    application = create_app({**app_config, "MS_CLIENT_ID": "my-app"})
    out = tmp_path / "manifest.xml"
    result = application.test_cli_runner().invoke(
        args=["manifest", "render", "--base-url", LOCAL_BASE, "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "MS_CLIENT_ID" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(("name", "base"), COMMITTED)
def test_the_pane_is_pinnable_on_messages_and_opens_on_meetings(name: str, base: str) -> None:
    """The item card follows the selection: pinned on message read (ItemChanged), offered on meeting read."""
    root = _parse((MANIFEST_DIR / name).read_text(encoding="utf-8"))
    v11 = _v11(root)
    pinned = {}
    for point in v11.iterfind(".//v11:ExtensionPoint", NS):
        action = point.find(".//v11:Action", NS)
        assert action is not None
        pinned[point.get(XSI_TYPE)] = action.findtext("v11:SupportsPinning", namespaces=NS) == "true"
    assert pinned["MessageReadCommandSurface"] is True
    # Outlook does not pin panes on appointments; the surface is there, without the flag.
    assert pinned["AppointmentAttendeeCommandSurface"] is False
    rules = {(r.get("ItemType"), r.get("FormType")) for r in root.iterfind(".//o:Rule/o:Rule", NS)}
    assert {("Message", "Read"), ("Appointment", "Read")} <= rules
