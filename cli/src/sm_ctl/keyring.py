"""The keys of a data directory as an operator sees them: show and rotate.

Rotation replaces what new parties use; enrolled nodes keep working because
each holds its own credential, and tokens already issued stay valid because
the previous signing key is kept (``sm_shared.token_keys.KEEP_KEYS``). The
command-signing key is not rotated here: every enrolled node holds its public
half.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sm_shared.access_keys import AccessKey, KeyKind, load_key, rotate_access_key
from sm_shared.datadir import DataDir
from sm_shared.pki import ca_fingerprint
from sm_shared.token_keys import rotate_token_keys


class Rotatable(StrEnum):
    ENROLLMENT = "enrollment"
    SECRET = "secret"  # noqa: S105 (the name of a key, not a key)
    TOKEN_SIGNING = "token-signing"  # noqa: S105
    ALL = "all"


@dataclass(frozen=True)
class Keys:
    enrollment: AccessKey
    secret: AccessKey
    fingerprint: bytes

    @property
    def fingerprint_hex(self) -> str:
        """``AB:CD:…``, the form ``openssl x509 -fingerprint -sha256`` prints."""
        return ":".join(f"{byte:02X}" for byte in self.fingerprint)


def current_keys(data: DataDir) -> Keys:
    return Keys(
        enrollment=load_key(data, KeyKind.ENROLLMENT),
        secret=load_key(data, KeyKind.SECRET),
        fingerprint=ca_fingerprint(data.ca_cert.read_bytes()),
    )


@dataclass(frozen=True)
class Rotation:
    """What one rotation produced: new access keys and the new signing key's kid."""

    enrollment: AccessKey | None = None
    secret: AccessKey | None = None
    signing_kid: str | None = None


def rotate(data: DataDir, which: Rotatable) -> Rotation:
    everything = which is Rotatable.ALL
    enrollment = secret = None
    kid = None
    if everything or which is Rotatable.ENROLLMENT:
        enrollment = rotate_access_key(data, KeyKind.ENROLLMENT)
    if everything or which is Rotatable.SECRET:
        secret = rotate_access_key(data, KeyKind.SECRET)
    if everything or which is Rotatable.TOKEN_SIGNING:
        kid = rotate_token_keys(data)
    return Rotation(enrollment, secret, kid)
