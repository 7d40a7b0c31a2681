"""Trust bootstrap: which CA to trust, learnt from the key itself.

A key is ``<kind>.<fingerprint>.<secret>``: ``fingerprint`` is the unpadded
base64url SHA-256 of the core CA certificate (DER), ``secret`` at least 32
characters of base64url. The agent fetches ``https://<core>/ca.pem`` once
without verification, keeps the certificate whose hash equals the fingerprint,
stores it (0600) and from then on verifies the core with it as its only CA,
host name checked. The client has its own copy of this logic (the agent
installs alone and shares no code with it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sm_agent.state import write_private

# The enrollment key, and the scoped enrollment tokens an admin creates: both pin the CA.
ENROLLMENT_KINDS = ("sme1", "smt1")
SECRET_KIND = "sms1"  # noqa: S105 (the client's key prefix, not a secret)
MAX_CA_BYTES = 64 * 1024
FETCH_TIMEOUT = 10.0
_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


class MalformedKey(ValueError):
    """The text is not a key this agent can use."""


class TrustError(Exception):
    """The core's CA could not be fetched, or is not the one the key names."""


@dataclass(frozen=True)
class AccessKey:
    kind: str
    fingerprint: bytes
    text: str

    def __repr__(self) -> str:  # never print the secret part
        return f"AccessKey(kind={self.kind!r}, fingerprint={self.fingerprint.hex()[:16]}…)"


def _b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_key(text: str, kinds: tuple[str, ...] = ENROLLMENT_KINDS) -> AccessKey:
    """Parse an enrollment key or token; refuse anything else with a message that says why."""
    text = text.strip()
    parts = text.split(".")
    if parts[0] == SECRET_KIND and SECRET_KIND not in kinds:
        raise MalformedKey(
            "this is the client's secret key (sms1.…); nodes enroll with the enrollment key (sme1.…)"
        )
    if len(parts) != 3 or parts[0] not in kinds:
        expected = " or ".join(f"'{kind}.<fingerprint>.<secret>'" for kind in kinds)
        raise MalformedKey(f"not an enrollment key or token (expected {expected})")
    try:
        fingerprint = _b64url_decode(parts[1])
    except ValueError as exc:
        raise MalformedKey("the fingerprint part of the key is not base64url") from exc
    if len(fingerprint) != 32:
        raise MalformedKey("the fingerprint part of the key is not a SHA-256 (truncated key?)")
    if len(parts[2]) < 32 or not re.fullmatch(r"[A-Za-z0-9_-]+", parts[2]):
        raise MalformedKey("the secret part of the key is truncated or damaged")
    return AccessKey(parts[0], fingerprint, text)


def core_origin(server: str) -> str:
    """``https://host[:port]`` of the core; a bare host name means https."""
    if "://" not in server:
        server = "https://" + server
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise TrustError(f"the core URL must be https://host[:port], not {server!r}")
    return f"https://{parts.netloc}"


def fingerprint_of(pem_block: bytes) -> bytes:
    """SHA-256 of the DER encoding of one PEM certificate."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem_block.decode("ascii"))).digest()


def pinned_certificate(pem: bytes, fingerprint: bytes) -> bytes:
    """The certificate in ``pem`` whose SHA-256 (DER) is ``fingerprint``; TrustError if none."""
    seen: list[str] = []
    for match in _PEM_BLOCK.finditer(pem):
        block = match.group(0)
        try:
            digest = fingerprint_of(block)
        except (ValueError, UnicodeDecodeError):
            continue
        if hmac.compare_digest(digest, fingerprint):
            return block + b"\n"
        seen.append(digest.hex())
    if not seen:
        raise TrustError("the core's /ca.pem holds no certificate")
    raise TrustError(
        "the core's CA certificate does not match the key: the key expects SHA-256 "
        f"{fingerprint.hex()}, the server sent {', '.join(seen)}. Either this is not the core "
        "that issued the key, or something between you and it presents another certificate."
    )


def fetch_ca_unverified(origin: str, timeout: float = FETCH_TIMEOUT) -> bytes:
    """GET ``<origin>/ca.pem`` without verifying the server: its hash is checked afterwards."""
    # Imported here: only enrollment fetches, and urllib.request is heavy for a running agent.
    import urllib.error
    import urllib.request

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Deliberately unverified: nothing is trusted yet; pinned_certificate() decides.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    url = origin + "/ca.pem"
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as response:  # noqa: S310 (https only: core_origin)
            body: bytes = response.read(MAX_CA_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise TrustError(f"{url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrustError(f"cannot fetch {url}: {reason}") from exc
    if len(body) > MAX_CA_BYTES:
        raise TrustError(f"{url} is larger than {MAX_CA_BYTES} bytes: not a CA certificate")
    return body


def verified_context(ca_file: Path) -> ssl.SSLContext:
    """A client context trusting only ``ca_file``, host names checked."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def bootstrap(server: str, key: AccessKey, ca_file: Path) -> ssl.SSLContext:
    """Make sure ``ca_file`` holds the CA the key names; return a context verifying with it.

    A stored CA with the right fingerprint is reused (nothing fetched); otherwise
    the CA is fetched once, checked and stored.
    """
    if ca_file.exists():
        try:
            stored = pinned_certificate(ca_file.read_bytes(), key.fingerprint)
        except TrustError:
            stored = None
        if stored is not None:
            return verified_context(ca_file)
    pem = pinned_certificate(fetch_ca_unverified(core_origin(server)), key.fingerprint)
    write_private(ca_file, pem)
    return verified_context(ca_file)
