"""Access-token verification, done locally by every service.

Tokens are RFC 9068 JWT access tokens issued by the registry's OAuth2
endpoint and signed with a key from the data directory (``token_keys``).
Services read the keys from the data directory, never from the registry.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from sm_shared.datadir import DataDir
from sm_shared.scopes import parse_scope
from sm_shared.token_keys import ALGORITHM, public_keys, signing_key

ISSUER: Final = "server-manager"
AUDIENCE: Final = "server-manager"
ACCESS_TOKEN_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})
# Verified tokens are remembered until they expire: a client reuses one token
# for many requests, and an ES256 signature check costs ~100 µs. A remembered
# token stays accepted until its ``exp`` even if its key is rotated out meanwhile
# (tokens are short-lived; the token endpoint's TTL bounds that window).
CACHE_SIZE: Final = 4096


class InvalidToken(Exception):
    """The token is malformed, badly signed, expired or not for us."""


@dataclass(frozen=True)
class Claims:
    """The verified claims of an access token."""

    subject: str
    client_id: str
    scopes: frozenset[str]
    raw: dict[str, Any]

    def token_info(self) -> dict[str, Any]:
        """The mapping Connexion's security layer expects (``sub``, ``scope``)."""
        return {**self.raw, "sub": self.subject, "scope": " ".join(sorted(self.scopes))}


_REGISTRY = JWTClaimsRegistry(
    iss={"essential": True, "value": ISSUER},
    aud={"essential": True, "value": AUDIENCE},
    sub={"essential": True},
    exp={"essential": True},
)


class TokenVerifier:
    """Verifies access tokens against the public keys in a data directory.

    A token naming an unknown ``kid`` makes the verifier look at the key file:
    when it changed (``smctl keys rotate`` replaces it), the keys are re-read,
    so a rotation is picked up at once without a restart; an unchanged file
    costs one ``stat`` and is not re-read, so unknown kids cannot make every
    request parse the file.
    """

    def __init__(self, data: DataDir) -> None:
        self._data = data
        self._stamp = self._file_stamp()
        self._keys: KeySet = public_keys(data)
        self._verified: dict[str, Claims] = {}

    @property
    def keys(self) -> KeySet:
        """The public keys tokens are checked against (no private halves)."""
        return self._keys

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self._data.token_keys.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _reload_if_changed(self, kid: object) -> None:
        if kid in {str(k.kid) for k in self._keys.keys}:
            return
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return
        self._keys = public_keys(self._data)
        self._stamp = stamp

    def verify(self, token: str) -> Claims:
        """The claims of ``token``; raises :class:`InvalidToken` for anything else."""
        cached = self._verified.get(token)
        if cached is not None:
            if cached.raw["exp"] > time.time():
                return cached
            del self._verified[token]
        claims = self._verify(token)
        if len(self._verified) >= CACHE_SIZE:
            # Drop the oldest entry (dicts keep insertion order).
            del self._verified[next(iter(self._verified))]
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> Claims:
        try:
            header = jws.extract_compact(token.encode()).protected
            self._reload_if_changed(header.get("kid"))
            decoded = jwt.decode(token, self._keys, algorithms=[ALGORITHM])
            _REGISTRY.validate(decoded.claims)
        except (JoseError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidToken(str(exc) or type(exc).__name__) from exc
        typ = decoded.header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("not an access token (typ must be at+jwt)")
        claims = decoded.claims
        subject = claims["sub"]
        client_id = claims.get("client_id", "")
        scope = claims.get("scope", "")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("sub must be a non-empty string")
        if not isinstance(client_id, str):
            raise InvalidToken("client_id must be a string")
        if not isinstance(scope, str):
            raise InvalidToken("scope must be a space-separated string")
        return Claims(subject=subject, client_id=client_id, scopes=parse_scope(scope), raw=claims)


def issue_access_token(
    data: DataDir, *, subject: str, client_id: str, scopes: Iterable[str], ttl: int
) -> str:
    """Sign an RFC 9068 access token with the newest key of ``data``.

    The registry's token endpoint is the only issuer in production; tests use
    this to hold tokens with exactly the scopes they need.
    """
    key = signing_key(data)
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "client_id": client_id,
        "scope": " ".join(sorted(set(scopes))),
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(16),
    }
    header = {"alg": ALGORITHM, "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key)
