"""Access-token verification: what is accepted and every way a token is refused."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize
from sm_shared.token_keys import public_jwks, rotate_token_keys, signing_key
from sm_shared.tokens import (
    AUDIENCE,
    ISSUER,
    InvalidToken,
    TokenVerifier,
    issue_access_token,
)


def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "client_id": "sm-client",
        "scope": "nodes:read",
        "iat": now,
        "exp": now + 300,
        "jti": "j1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(data: DataDir, payload: dict[str, Any], **header: Any) -> str:
    key = signing_key(data)
    full = {"alg": "ES256", "typ": "at+jwt", "kid": key.kid, **header}
    return jwt.encode({k: v for k, v in full.items() if v is not None}, payload, key)


def sign_raw(data: DataDir, header: dict[str, Any], payload: Any) -> str:
    """Sign any header and payload, even ones joserfc refuses to produce."""
    private = orjson.loads(data.token_keys.read_bytes())["keys"][-1]
    d = int.from_bytes(base64.urlsafe_b64decode(private["d"] + "=="), "big")
    key = ec.derive_private_key(d, ec.SECP256R1())
    signing_input = f"{b64(header)}.{b64(payload)}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    signature = base64.urlsafe_b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return f"{signing_input}.{signature.rstrip(b'=').decode()}"


def test_raw_signing_helper_makes_valid_tokens(data_dir: DataDir) -> None:
    # The helper must be right for the refusals below to mean anything.
    header = {"alg": "ES256", "typ": "at+jwt", "kid": signing_key(data_dir).kid}
    assert TokenVerifier(data_dir).verify(sign_raw(data_dir, header, claims())).subject == "alice"


def test_issued_token_verifies_to_its_claims(data_dir: DataDir) -> None:
    token = issue_access_token(
        data_dir, subject="alice", client_id="sm-client", scopes=["b", "a", "a"], ttl=60
    )
    verified = TokenVerifier(data_dir).verify(token)
    assert verified.subject == "alice"
    assert verified.client_id == "sm-client"
    assert verified.scopes == frozenset({"a", "b"})
    assert verified.raw["iss"] == ISSUER
    assert verified.raw["aud"] == AUDIENCE
    assert verified.raw["exp"] - verified.raw["iat"] == 60
    info = verified.token_info()
    assert info["sub"] == "alice"
    assert info["scope"] == "a b"
    assert info["client_id"] == "sm-client"


def test_header_is_an_rfc9068_access_token_header(data_dir: DataDir) -> None:
    token = issue_access_token(data_dir, subject="s", client_id="c", scopes=[], ttl=60)
    header = orjson.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "ES256", "typ": "at+jwt", "kid": signing_key(data_dir).kid}


def test_expired_token_is_refused(data_dir: DataDir) -> None:
    token = sign(data_dir, claims(iat=int(time.time()) - 120, exp=int(time.time()) - 60))
    with pytest.raises(InvalidToken):
        TokenVerifier(data_dir).verify(token)


def test_token_expiring_while_cached_is_refused(data_dir: DataDir) -> None:
    verifier = TokenVerifier(data_dir)
    token = issue_access_token(data_dir, subject="s", client_id="c", scopes=[], ttl=1)
    verifier.verify(token)
    time.sleep(1.1)
    with pytest.raises(InvalidToken):
        verifier.verify(token)


@pytest.mark.parametrize(
    "payload",
    [
        claims(aud="someone-else"),
        claims(aud=["someone-else"]),
        claims(iss="https://evil.example"),
        claims(iss=None),
        claims(aud=None),
        claims(sub=None),
        claims(exp=None),
        claims(exp="tomorrow"),
        claims(nbf=int(time.time()) + 3600),
    ],
    ids=[
        "wrong-aud",
        "wrong-aud-list",
        "wrong-iss",
        "no-iss",
        "no-aud",
        "no-sub",
        "no-exp",
        "exp-not-a-number",
        "not-yet-valid",
    ],
)
def test_wrong_or_missing_claims_are_refused(data_dir: DataDir, payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken):
        TokenVerifier(data_dir).verify(sign(data_dir, payload))


def test_token_signed_by_another_key_is_refused(data_dir: DataDir, tmp_path: Path) -> None:
    other = DataDir(tmp_path / "other")
    initialize(other)
    foreign = issue_access_token(other, subject="s", client_id="c", scopes=["admin"], ttl=60)
    with pytest.raises(InvalidToken):
        TokenVerifier(data_dir).verify(foreign)


def test_token_claiming_our_kid_but_signed_by_another_key_is_refused(data_dir: DataDir) -> None:
    impostor = ECKey.generate_key("P-256", private=True)
    header = {"alg": "ES256", "typ": "at+jwt", "kid": signing_key(data_dir).kid}
    token = jwt.encode(header, claims(scope="admin"), impostor)
    with pytest.raises(InvalidToken):
        TokenVerifier(data_dir).verify(token)


def test_tampered_payload_is_refused(data_dir: DataDir) -> None:
    token = sign(data_dir, claims(scope="nodes:read"))
    head, _, signature = token.split(".")
    forged = f"{head}.{b64(claims(scope='admin'))}.{signature}"
    with pytest.raises(InvalidToken):
        TokenVerifier(data_dir).verify(forged)


def test_alg_none_is_refused(data_dir: DataDir) -> None:
    kid = signing_key(data_dir).kid
    token = f"{b64({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{b64(claims(scope='admin'))}."
    with pytest.raises(InvalidToken):
        TokenVerifier(data_dir).verify(token)


def test_hs256_with_the_public_key_as_secret_is_refused(data_dir: DataDir) -> None:
    # The classic key-confusion attack: HMAC keyed with the published public key.
    public = public_jwks(data_dir)["keys"][0]
    secret = OctKey.import_key(orjson.dumps(public))
    header = {"alg": "HS256", "typ": "at+jwt", "kid": public["kid"]}
    token = jwt.encode(header, claims(scope="admin"), secret, algorithms=["HS256"])
    with pytest.raises(InvalidToken):
        TokenVerifier(data_dir).verify(token)


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "id+jwt", 7, ["at+jwt"], {"a": 1}])
def test_typ_other_than_at_jwt_is_refused(data_dir: DataDir, typ: object) -> None:
    header: dict[str, Any] = {"alg": "ES256", "kid": signing_key(data_dir).kid}
    if typ is not None:
        header["typ"] = typ
    with pytest.raises(InvalidToken):
        TokenVerifier(data_dir).verify(sign_raw(data_dir, header, claims()))


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2],
        "text",
        7,
        None,
        claims(sub=["a"]),
        claims(scope=["admin"]),
        claims(sub=""),
        claims(client_id=7),
    ],
    ids=[
        "list",
        "string",
        "number",
        "null",
        "sub-list",
        "scope-list",
        "sub-empty",
        "client-id-int",
    ],
)
def test_correctly_signed_nonsense_is_refused(data_dir: DataDir, payload: object) -> None:
    header = {"alg": "ES256", "typ": "at+jwt", "kid": signing_key(data_dir).kid}
    with pytest.raises(InvalidToken):
        TokenVerifier(data_dir).verify(sign_raw(data_dir, header, payload))


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_typ_at_jwt_is_accepted_in_its_spellings(data_dir: DataDir, typ: str) -> None:
    assert TokenVerifier(data_dir).verify(sign(data_dir, claims(), typ=typ)).subject == "alice"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x",
        "a.b.c",
        "é.é.é",
        "....",
        f"{b64([1])}.{b64({})}.",
        f"{b64({'alg': 'ES256', 'kid': ['a']})}.{b64({})}.AAAA",
        f"{b64({'alg': 'ES256', 'kid': {'a': 1}})}.{b64([])}.AAAA",
        f"{b64('text')}.{b64('text')}.AAAA",
    ],
)
def test_malformed_tokens_raise_invalid_token_only(data_dir: DataDir, token: str) -> None:
    with pytest.raises(InvalidToken):
        TokenVerifier(data_dir).verify(token)


def test_unknown_kid_is_picked_up_right_after_rotation(data_dir: DataDir) -> None:
    verifier = TokenVerifier(data_dir)
    before = issue_access_token(data_dir, subject="s", client_id="c", scopes=[], ttl=60)
    verifier.verify(before)
    rotate_token_keys(data_dir)
    after = issue_access_token(data_dir, subject="s", client_id="c", scopes=[], ttl=60)
    # No waiting: the rotated file is noticed at once.
    assert verifier.verify(after).subject == "s"
    # The previous key is still accepted (tokens in flight survive a rotation).
    fresh = TokenVerifier(data_dir)
    assert fresh.verify(before).subject == "s"


def test_key_rotated_out_is_no_longer_accepted(data_dir: DataDir) -> None:
    oldest = issue_access_token(data_dir, subject="s", client_id="c", scopes=[], ttl=60)
    rotate_token_keys(data_dir)
    rotate_token_keys(data_dir)
    with pytest.raises(InvalidToken):
        TokenVerifier(data_dir).verify(oldest)


def test_unknown_kid_does_not_reload_an_unchanged_key_file(data_dir: DataDir) -> None:
    # Unknown kids are cheap to send; they must not make every request re-read keys.
    verifier = TokenVerifier(data_dir)
    loaded = verifier.keys
    impostor = ECKey.generate_key("P-256", private=True, auto_kid=True)
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": impostor.kid}, claims(), impostor)
    for _ in range(3):
        with pytest.raises(InvalidToken):
            verifier.verify(token)
    assert verifier.keys is loaded
    rotate_token_keys(data_dir)
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert verifier.keys is not loaded


def test_verifier_holds_no_private_keys(data_dir: DataDir) -> None:
    verifier = TokenVerifier(data_dir)
    for key in verifier.keys.keys:
        assert not key.is_private
