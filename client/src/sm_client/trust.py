"""Trust bootstrap for the client: which CA to trust, learnt from the secret key.

The secret key is ``sms1.<fingerprint>.<secret>``; ``fingerprint`` is the
unpadded base64url SHA-256 of the core CA certificate (DER). The client
fetches ``https://<core>/ca.pem`` once without verification, keeps the
certificate whose hash equals the fingerprint, stores it (0600) and from then
on verifies the core with it as its only CA, host name checked. (The agent
has its own copy of this logic: each installs without the other.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

SECRET_KIND = "sms1"  # noqa: S105 (the key's prefix, not a secret)
NODE_KINDS = ("sme1", "smt1")
MAX_CA_BYTES = 64 * 1024
FETCH_TIMEOUT = 10.0
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


class MalformedKey(ValueError):
    """The text is not a secret key."""


class TrustError(Exception):
    """The core's CA could not be fetched, or is not the one the key names."""


@dataclass(frozen=True)
class SecretKey:
    fingerprint: bytes
    text: str

    def __repr__(self) -> str:  # never print the secret part
        return f"SecretKey(fingerprint={self.fingerprint.hex()[:16]}…)"


def parse_secret_key(text: str) -> SecretKey:
    """Parse the secret key; refuse anything else with a message that says why."""
    text = text.strip()
    parts = text.split(".")
    if parts[0] in NODE_KINDS:
        raise MalformedKey(
            "this is a node enrollment key; the client needs the secret key (sms1.…)"
        )
    if len(parts) != 3 or parts[0] != SECRET_KIND:
        raise MalformedKey("not a secret key (expected 'sms1.<fingerprint>.<secret>')")
    if not _B64URL.fullmatch(parts[1]):
        raise MalformedKey("the fingerprint part of the key is not base64url")
    fingerprint = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
    if len(fingerprint) != 32:
        raise MalformedKey("the fingerprint part of the key is not a SHA-256 (truncated key?)")
    if len(parts[2]) < 32 or not _B64URL.fullmatch(parts[2]):
        raise MalformedKey("the secret part of the key is truncated or damaged")
    return SecretKey(fingerprint, text)


def core_origin(server: str) -> str:
    """``https://host[:port]`` of the core; a bare host name means https."""
    if "://" not in server:
        server = "https://" + server
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise TrustError(f"the core URL must be https://host[:port], not {server!r}")
    return f"https://{parts.netloc}"


def pinned_certificate(pem: bytes, fingerprint: bytes) -> bytes:
    """The certificate in ``pem`` whose SHA-256 (DER) is ``fingerprint``; TrustError if none."""
    seen: list[str] = []
    for match in _PEM_BLOCK.finditer(pem):
        try:
            der = ssl.PEM_cert_to_DER_cert(match.group(0).decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            continue
        digest = hashlib.sha256(der).digest()
        if hmac.compare_digest(digest, fingerprint):
            return match.group(0) + b"\n"
        seen.append(digest.hex())
    if not seen:
        raise TrustError("the core's /ca.pem holds no certificate")
    raise TrustError(
        "the core's CA certificate does not match the secret key: the key expects SHA-256 "
        f"{fingerprint.hex()}, the server sent {', '.join(seen)}. Either this is not the core "
        "that issued the key, or something between you and it presents another certificate."
    )


async def fetch_ca_unverified(origin: str) -> bytes:
    """GET ``<origin>/ca.pem`` without verifying the server: its hash is checked afterwards."""
    url = origin + "/ca.pem"
    body = b""
    try:
        # Deliberately unverified: nothing is trusted yet; pinned_certificate() decides.
        async with (
            httpx.AsyncClient(verify=False, timeout=FETCH_TIMEOUT) as http,  # noqa: S501
            http.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise TrustError(f"{url} answered HTTP {response.status_code}")
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_CA_BYTES:
                    raise TrustError(f"{url} is larger than {MAX_CA_BYTES} bytes: not a CA")
    except httpx.HTTPError as exc:
        raise TrustError(f"cannot fetch {url}: {exc}") from exc
    return body


def verified_context(ca_file: Path) -> ssl.SSLContext:
    """A client context trusting only ``ca_file``, host names checked."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _store(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def stored_context(key: SecretKey, ca_file: Path) -> ssl.SSLContext | None:
    """A context from ``ca_file`` if it holds the CA the key names, else None."""
    try:
        pinned_certificate(ca_file.read_bytes(), key.fingerprint)
    except (OSError, TrustError):
        return None  # missing, damaged, or another core's CA: fetch the right one
    return verified_context(ca_file)


async def bootstrap(server: str, key: SecretKey, ca_file: Path) -> ssl.SSLContext:
    """Make sure ``ca_file`` holds the CA the key names; return a context verifying with it.

    A stored CA with the right fingerprint is reused (nothing fetched).
    """
    stored = stored_context(key, ca_file)
    if stored is not None:
        return stored
    pem = pinned_certificate(await fetch_ca_unverified(core_origin(server)), key.fingerprint)
    _store(ca_file, pem)
    return verified_context(ca_file)
