"""JWT signing keys: a private JWKS file in the data directory.

The newest key signs; older ones stay published (JWKS) and accepted until
they age out, so rotation never invalidates a token still in flight.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from joserfc.jwk import ECKey, KeySet

from sm_shared.datadir import DataDir, write_private

ALGORITHM = "ES256"
KEEP_KEYS = 2


def _new_key() -> ECKey:
    return ECKey.generate_key("P-256", private=True, auto_kid=True)


def _read(data: DataDir) -> list[dict[str, Any]]:
    if not data.token_keys.exists():
        return []
    keys: list[dict[str, Any]] = orjson.loads(data.token_keys.read_bytes())["keys"]
    return keys


def _write(data: DataDir, keys: list[dict[str, Any]]) -> None:
    write_private(data.token_keys, orjson.dumps({"keys": keys}, option=orjson.OPT_INDENT_2))


def _as_dict(key: ECKey) -> dict[str, Any]:
    d: dict[str, Any] = dict(key.as_dict(private=True))
    d.update({"alg": ALGORITHM, "use": "sig", "iat": int(time.time())})
    return d


def ensure_token_keys(data: DataDir) -> bool:
    """Create the first signing key; True when it was created."""
    if _read(data):
        return False
    _write(data, [_as_dict(_new_key())])
    return True


def rotate_token_keys(data: DataDir) -> str:
    """Add a new signing key; returns its kid.

    The previous key stays (verifiers accept tokens it signed until they
    expire); older ones are dropped, ``KEEP_KEYS`` in all.
    """
    key = _as_dict(_new_key())
    _write(data, [*_read(data), key][-KEEP_KEYS:])
    return str(key["kid"])


def load_private_keys(data: DataDir) -> KeySet:
    """Every signing key, private halves included (the token endpoint's)."""
    return KeySet.import_key_set({"keys": _read(data)})


def signing_key(data: DataDir) -> ECKey:
    """The newest key: the one that signs."""
    return ECKey.import_key(_read(data)[-1])


def _public(raw: dict[str, Any]) -> dict[str, Any]:
    # Only the standard public members: x/y of the curve point, never "d".
    return {
        "kty": "EC",
        "crv": raw["crv"],
        "x": raw["x"],
        "y": raw["y"],
        "kid": raw["kid"],
        "alg": ALGORITHM,
        "use": "sig",
    }


def public_jwks(data: DataDir) -> dict[str, Any]:
    """The public JWKS (what ``/.well-known/jwks.json`` publishes), oldest key first."""
    return {"keys": [_public(raw) for raw in _read(data)]}


def public_keys(data: DataDir) -> KeySet:
    """The public halves of every signing key: what verifiers need and nothing more."""
    jwks: Any = public_jwks(data)
    return KeySet.import_key_set(jwks)
