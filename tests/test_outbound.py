"""Outbound trust: an extra CA bundle is combined with the public roots in a file of our own."""

from __future__ import annotations

import os
import stat

import certifi

from backend.outbound import trust_bundle
from tests.fakes.tls import TestCA


def test_no_extra_ca_means_the_public_roots() -> None:
    assert trust_bundle("") == certifi.where()


def test_extra_ca_is_added_to_the_public_roots_in_a_private_file(ca: TestCA) -> None:
    path = trust_bundle(ca.ca_path)
    assert isinstance(path, str) and path != certifi.where()
    with open(path, "rb") as fh:
        combined = fh.read()
    with open(ca.ca_path, "rb") as fh:
        extra = fh.read()
    with open(certifi.where(), "rb") as fh:
        public = fh.read()
    assert extra in combined and public.strip() in combined
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert trust_bundle(ca.ca_path) == path  # built once per process

