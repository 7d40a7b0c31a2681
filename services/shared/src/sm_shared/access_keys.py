"""The enrollment key (for nodes) and the secret key (for the client).

Format (documented in README.md, parsed independently by the agent and client)::

    sme1.<fingerprint>.<secret>     enrollment key: only enrolls nodes
    sms1.<fingerprint>.<secret>     secret key: admin access for the client

``fingerprint`` is the unpadded base64url SHA-256 of the core CA certificate
(DER), ``secret`` 32 random bytes, unpadded base64url. Whoever holds a key
learns which CA to trust from it, so nothing else needs copying.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sm_shared.datadir import DataDir, write_private
from sm_shared.pki import ca_fingerprint


class KeyKind(StrEnum):
    ENROLLMENT = "sme1"
    SECRET = "sms1"  # noqa: S105 (a key-kind prefix, not a secret)


class MalformedKey(ValueError):
    """The text is not a key of the expected kind."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class AccessKey:
    kind: KeyKind
    fingerprint: bytes
    secret: str

    def __str__(self) -> str:
        return f"{self.kind.value}.{b64url(self.fingerprint)}.{self.secret}"

    @classmethod
    def generate(cls, kind: KeyKind, fingerprint: bytes) -> AccessKey:
        return cls(kind, fingerprint, b64url(secrets.token_bytes(32)))

    @classmethod
    def parse(cls, text: str, kind: KeyKind) -> AccessKey:
        parts = text.strip().split(".")
        if len(parts) != 3 or parts[0] != kind.value:
            raise MalformedKey(f"not a {kind.name.lower()} key (expected '{kind.value}.…')")
        try:
            fingerprint = b64url_decode(parts[1])
        except ValueError as exc:
            raise MalformedKey("the fingerprint part is not base64url") from exc
        if len(fingerprint) != 32 or len(parts[2]) < 32:
            raise MalformedKey("the key is truncated")
        return cls(kind, fingerprint, parts[2])

    def matches(self, text: str) -> bool:
        """Constant-time comparison with a presented key."""
        return hmac.compare_digest(str(self).encode(), text.strip().encode())


def _path(data: DataDir, kind: KeyKind) -> Path:
    return data.enrollment_key if kind is KeyKind.ENROLLMENT else data.secret_key


def load_key(data: DataDir, kind: KeyKind) -> AccessKey:
    return AccessKey.parse(_path(data, kind).read_text(), kind)


def ensure_access_keys(data: DataDir) -> bool:
    """Create both keys on first start (the CA must exist); True when any was created."""
    fingerprint = ca_fingerprint(data.ca_cert.read_bytes())
    created = False
    for kind in KeyKind:
        path = _path(data, kind)
        if not path.exists():
            write_private(path, (str(AccessKey.generate(kind, fingerprint)) + "\n").encode())
            created = True
    return created


def rotate_access_key(data: DataDir, kind: KeyKind) -> AccessKey:
    """Replace one key. Enrolled nodes keep working: they hold their own credentials."""
    key = AccessKey.generate(kind, ca_fingerprint(data.ca_cert.read_bytes()))
    write_private(_path(data, kind), (str(key) + "\n").encode())
    return key
