"""JWT signing keys: the private JWKS file, rotation, the public JWKS."""

from __future__ import annotations

import stat

import orjson

from sm_shared.datadir import DataDir
from sm_shared.token_keys import (
    ALGORITHM,
    KEEP_KEYS,
    ensure_token_keys,
    load_private_keys,
    public_jwks,
    rotate_token_keys,
    signing_key,
)

# Members of an EC JWK that reveal the private key (RFC 7518 §6.2.2).
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def kids(data: DataDir) -> list[str]:
    return [k["kid"] for k in public_jwks(data)["keys"]]


def test_first_start_creates_one_private_es256_key(data_dir: DataDir) -> None:
    raw = orjson.loads(data_dir.token_keys.read_bytes())
    assert len(raw["keys"]) == 1
    key = raw["keys"][0]
    assert key["kty"] == "EC"
    assert key["crv"] == "P-256"
    assert key["alg"] == ALGORITHM == "ES256"
    assert "d" in key
    assert key["kid"]
    assert stat.S_IMODE(data_dir.token_keys.stat().st_mode) == 0o600
    assert ensure_token_keys(data_dir) is False


def test_rotation_signs_with_the_new_key_and_keeps_the_previous_kid(data_dir: DataDir) -> None:
    first = signing_key(data_dir).kid
    second = rotate_token_keys(data_dir)
    assert second != first
    assert signing_key(data_dir).kid == second
    assert kids(data_dir) == [first, second]
    third = rotate_token_keys(data_dir)
    # Only KEEP_KEYS keys stay: the newest and the one before it.
    assert KEEP_KEYS == 2
    assert kids(data_dir) == [second, third]
    assert {str(k.kid) for k in load_private_keys(data_dir).keys} == {second, third}
    assert stat.S_IMODE(data_dir.token_keys.stat().st_mode) == 0o600


def test_public_jwks_has_no_private_parts(data_dir: DataDir) -> None:
    rotate_token_keys(data_dir)
    jwks = public_jwks(data_dir)
    assert len(jwks["keys"]) == 2
    for key in jwks["keys"]:
        assert not PRIVATE_MEMBERS & set(key), key
        assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
        assert key["use"] == "sig"
        assert key["alg"] == "ES256"
    # The file itself does hold the private halves (it signs).
    private = orjson.loads(data_dir.token_keys.read_bytes())["keys"]
    assert all("d" in key for key in private)
    # Public members are the same as in the private file.
    for public, secret in zip(jwks["keys"], private, strict=True):
        assert (public["x"], public["y"], public["kid"]) == (
            secret["x"],
            secret["y"],
            secret["kid"],
        )
