"""The Ed25519 key the core signs commands with; agents get its public half at enrollment."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sm_shared.access_keys import b64url
from sm_shared.datadir import DataDir, write_private


def ensure_command_key(data: DataDir) -> bool:
    if data.command_key.exists():
        return False
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(data.command_key, pem)
    return True


def load_command_key(data: DataDir) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(data.command_key.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"{data.command_key} is not an Ed25519 key")
    return key


def command_public_key(data: DataDir) -> str:
    """The raw public key, unpadded base64url (what agents store)."""
    raw = (
        load_command_key(data)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return b64url(raw)
