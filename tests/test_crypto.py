"""The one crypto module: MultiFernet secrets, purpose-bound signatures, fingerprints."""

from __future__ import annotations

import time

import pytest
from cryptography.fernet import Fernet

from backend.security.crypto import (
    DecryptError,
    InvalidKey,
    Purpose,
    SecretBox,
    SignatureInvalid,
    SignatureTooOld,
    Signer,
    check_keys,
    fingerprint,
)


def test_secret_box_round_trip_and_rotation() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = SecretBox([old]).encrypt("refresh-token-value")
    assert "refresh-token-value" not in token
    box = SecretBox([new, old])
    assert box.decrypt(token) == "refresh-token-value"
    assert not box.is_current(token)
    rotated = box.rotate(token)
    assert box.is_current(rotated)
    assert SecretBox([new]).decrypt(rotated) == "refresh-token-value"
    with pytest.raises(DecryptError):
        SecretBox([new]).decrypt(token)


@pytest.mark.parametrize("keys", [[], ["x"], ["" ], ["dG9vc2hvcnQ="], ["é" * 44]])
def test_bad_keys_are_refused(keys: list[str]) -> None:
    with pytest.raises(InvalidKey):
        check_keys(keys)


def test_signatures_are_bound_to_their_purpose_and_expire() -> None:
    signer = Signer("s" * 40)
    value = signer.sign(Purpose.API_TOKEN, {"sid": "a"})
    assert signer.unsign(Purpose.API_TOKEN, value, max_age=60) == {"sid": "a"}
    with pytest.raises(SignatureInvalid):
        signer.unsign(Purpose.DIALOG_CODE, value, max_age=60)
    with pytest.raises(SignatureInvalid):
        Signer("t" * 40).unsign(Purpose.API_TOKEN, value, max_age=60)
    with pytest.raises(SignatureInvalid):
        signer.unsign(Purpose.API_TOKEN, value[:-2] + "xx", max_age=60)
    time.sleep(1.1)
    with pytest.raises(SignatureTooOld):
        signer.unsign(Purpose.API_TOKEN, value, max_age=0)


@pytest.mark.parametrize("bad", ["", "a" * 5000, "not.a.token"])
def test_malformed_signed_values(bad: str) -> None:
    with pytest.raises(SignatureInvalid):
        Signer("s" * 40).unsign(Purpose.OAUTH_STATE, bad, max_age=60)


def test_fingerprint_does_not_reveal_the_token() -> None:
    fp = fingerprint("secret-token")
    assert fp == fingerprint("secret-token") and "secret" not in fp and len(fp) == 16


@pytest.mark.parametrize("value", ["", "<a@b>", "é" * 300, "x" * 5000])
def test_keyed_hasher_gives_keyed_hash(value: str) -> None:
    from backend.security.crypto import keyed_hash, keyed_hasher

    hasher = keyed_hasher("server-key")
    assert hasher(value) == keyed_hash("server-key", value)
    assert hasher(value) == hasher(value)  # the keyed state is copied, never consumed
    assert keyed_hasher("other-key")(value) != hasher(value)
