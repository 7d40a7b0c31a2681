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
from sm_shared.token_keys import ALGORITHM, load_private_keys, signing_key

ISSUER: Final = "server-manager"
AUDIENCE: Final = "server-manager"
RELOAD_INTERVAL: Final = 5.0
# Verified tokens are remembered until they expire: a client reuses one token
# for many requests, and an ES256 signature check costs ~100 µs.
CACHE_SIZE: Final = 4096


class InvalidToken(Exception):
    """The token is malformed, badly signed, expired or not for us."""


@dataclass(frozen=True)
class Claims:
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
    """Verifies access tokens against the keys in a data directory.

    An unknown ``kid`` re-reads the key file (at most every few seconds), so a
    key rotated by ``smctl keys rotate`` is picked up without a restart.
    """

    def __init__(self, data: DataDir) -> None:
        self._data = data
        self._keys: KeySet = load_private_keys(data)
        self._loaded_at = time.monotonic()
        self._verified: dict[str, Claims] = {}

    def _known_kids(self) -> set[str]:
        return {str(k.kid) for k in self._keys.keys}

    def _maybe_reload(self, kid: str | None) -> None:
        if kid in self._known_kids():
            return
        if time.monotonic() - self._loaded_at < RELOAD_INTERVAL:
            return
        self._keys = load_private_keys(self._data)
        self._loaded_at = time.monotonic()

    def verify(self, token: str) -> Claims:
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
            self._maybe_reload(header.get("kid"))
            decoded = jwt.decode(token, self._keys, algorithms=[ALGORITHM])
            _REGISTRY.validate(decoded.claims)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise InvalidToken(str(exc) or type(exc).__name__) from exc
        if decoded.header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
            raise InvalidToken("not an access token")
        claims = decoded.claims
        return Claims(
            subject=str(claims["sub"]),
            client_id=str(claims.get("client_id", "")),
            scopes=parse_scope(str(claims.get("scope", ""))),
            raw=claims,
        )


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
