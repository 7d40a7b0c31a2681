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
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sm_shared.datadir import DataDir, write_private
from sm_shared.pki import ca_fingerprint


class KeyKind(StrEnum):
    """The key's prefix: which kind it is and the version of its format."""

    ENROLLMENT = "sme1"
    SECRET = "sms1"  # noqa: S105 (a key-kind prefix, not a secret)


# 32 bytes in unpadded base64url are exactly 43 characters of its alphabet.
_PART = re.compile(r"[A-Za-z0-9_-]{43}")


class MalformedKey(ValueError):
    """The text is not a key of the expected kind."""


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """The inverse of :func:`b64url`; raises ``ValueError`` on text outside its alphabet."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


@dataclass(frozen=True)
class AccessKey:
    """One key: its kind, the CA fingerprint it carries and its secret part.

    ``str(key)`` is the text operators copy; ``repr`` leaves the secret out so
    a key never lands in a log by accident.
    """

    kind: KeyKind
    fingerprint: bytes
    secret: str = field(repr=False)

    def __str__(self) -> str:
        return f"{self.kind.value}.{b64url(self.fingerprint)}.{self.secret}"

    @classmethod
    def generate(cls, kind: KeyKind, fingerprint: bytes) -> AccessKey:
        """A new key of ``kind`` carrying ``fingerprint`` (32 bytes) and 32 random bytes."""
        return cls(kind, fingerprint, b64url(secrets.token_bytes(32)))

    @classmethod
    def parse(cls, text: str, kind: KeyKind) -> AccessKey:
        """Parse key text (surrounding whitespace ignored); raises :class:`MalformedKey`."""
        parts = text.strip().split(".")
        if len(parts) != 3 or parts[0] != kind.value:
            raise MalformedKey(f"not a {kind.name.lower()} key (expected '{kind.value}.…')")
        if not _PART.fullmatch(parts[1]):
            raise MalformedKey("the fingerprint part is not 32 bytes of unpadded base64url")
        if not _PART.fullmatch(parts[2]):
            raise MalformedKey("the secret part is not 32 bytes of unpadded base64url")
        try:
            fingerprint = b64url_decode(parts[1])
        except ValueError as exc:  # unreachable after the pattern; kept as a guard
            raise MalformedKey("the fingerprint part is not base64url") from exc
        return cls(kind, fingerprint, parts[2])

    def matches(self, text: str) -> bool:
        """Whether ``text`` is this key; the comparison takes the same time wherever they differ."""
        return hmac.compare_digest(str(self).encode(), text.strip().encode())


def _path(data: DataDir, kind: KeyKind) -> Path:
    return data.enrollment_key if kind is KeyKind.ENROLLMENT else data.secret_key


def load_key(data: DataDir, kind: KeyKind) -> AccessKey:
    """The key of ``kind`` stored in ``data``."""
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
