"""The Ed25519 command-signing key."""

from __future__ import annotations

import stat

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sm_shared.access_keys import b64url_decode
from sm_shared.command_keys import command_public_key, ensure_command_key, load_command_key
from sm_shared.datadir import DataDir


def test_public_key_is_raw_32_bytes_that_verify_the_private_key(data_dir: DataDir) -> None:
    raw = b64url_decode(command_public_key(data_dir))
    assert len(raw) == 32
    public = Ed25519PublicKey.from_public_bytes(raw)
    signature = load_command_key(data_dir).sign(b"run uptime on n1")
    public.verify(signature, b"run uptime on n1")
    with pytest.raises(InvalidSignature):
        public.verify(signature, b"run rm -rf / on n1")


def test_key_file_is_private_and_kept(data_dir: DataDir) -> None:
    assert stat.S_IMODE(data_dir.command_key.stat().st_mode) == 0o600
    before = command_public_key(data_dir)
    assert ensure_command_key(data_dir) is False
    assert command_public_key(data_dir) == before


def test_a_non_ed25519_key_is_refused(data_dir: DataDir) -> None:
    data_dir.command_key.write_bytes(data_dir.ca_key.read_bytes())  # an ECDSA key
    with pytest.raises(TypeError):
        load_command_key(data_dir)
