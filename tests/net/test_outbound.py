"""Outbound trust: an extra CA bundle is combined with the public roots in a file only we can write."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import certifi
import pytest

from backend.net import outbound
from backend.net.outbound import trust_bundle
from sandbox.tls import TestCA


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp directory of the test's own, and no bundle cached from earlier tests."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(outbound, "_bundles", {})
    return tmp_path


def test_no_extra_ca_means_the_public_roots() -> None:
    assert trust_bundle("") == certifi.where()


def test_extra_ca_is_added_to_the_public_roots_in_a_private_file(ca: TestCA, private_tmp: Path) -> None:
    path = trust_bundle(ca.ca_path)
    assert isinstance(path, str) and path != certifi.where()
    combined = Path(path).read_bytes()
    assert Path(ca.ca_path).read_bytes() in combined
    assert Path(certifi.where()).read_bytes().strip() in combined
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert trust_bundle(ca.ca_path) == path


def test_forked_processes_reuse_one_file(ca: TestCA, private_tmp: Path) -> None:
    # RQ runs each job in a forked work-horse that exits without cleanup: no file per job.
    paths = []
    for _ in range(3):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: nothing cached, as in a work-horse
            os.close(read)
            outbound._bundles.clear()
            os.write(write, str(trust_bundle(ca.ca_path)).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as fh:
            paths.append(fh.read().decode())
        os.waitpid(pid, 0)
    assert len(set(paths)) == 1
    assert [p.name for p in Path(paths[0]).parent.iterdir()] == [Path(paths[0]).name]


def test_a_directory_others_can_write_is_never_used(ca: TestCA, private_tmp: Path) -> None:
    planted = private_tmp / f"sidebar-sync-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    path = trust_bundle(ca.ca_path)
    assert isinstance(path, str) and Path(path).parent != planted
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


def test_a_tampered_bundle_is_rewritten(ca: TestCA) -> None:
    path = trust_bundle(ca.ca_path)
    assert isinstance(path, str)
    expected = Path(path).read_bytes()
    Path(path).write_bytes(b"not the bundle")
    outbound._bundles.clear()
    assert trust_bundle(ca.ca_path) == path and Path(path).read_bytes() == expected


def test_environment_proxies_still_apply_read_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "inside.example")
    session = outbound.make_session()
    reads: list[str] = []
    real = outbound.requests.utils.get_environ_proxies

    def counted(url: str, no_proxy: str | None = None) -> dict[str, str]:
        reads.append(url)
        return real(url, no_proxy)

    monkeypatch.setattr(outbound.requests.utils, "get_environ_proxies", counted)
    for _ in range(3):
        merged = session.merge_environment_settings("https://graph.example/v1.0/me", {}, None, None, None)
        assert merged["proxies"]["https"] == "http://proxy.example:3128"
    assert reads == ["https://graph.example"]
    inside = session.merge_environment_settings("https://inside.example/x", {}, None, None, None)
    assert "https" not in inside["proxies"]
    # A proxy the caller names wins over the environment's.
    given = session.merge_environment_settings("https://graph.example/x", {"https": "http://mine:1"}, None, None, None)
    assert given["proxies"]["https"] == "http://mine:1"


def test_netrc_credentials_never_ride_on_our_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine graph.example login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    prepared = outbound.make_session().prepare_request(outbound.requests.Request("GET", "https://graph.example/x"))
    assert "Authorization" not in prepared.headers
