"""Trust bootstrap: the CA certificate and the public token keys, served without auth."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from joserfc import jws
from starlette.testclient import TestClient

from sm_registry.oauth import TOKEN_PATH
from sm_shared.access_keys import KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.token_keys import rotate_token_keys
from sm_shared.tokens import TokenVerifier


def admin_token(client: TestClient, data_dir: DataDir) -> str:
    response = client.post(
        TOKEN_PATH,
        data={
            "grant_type": "client_credentials",
            "client_id": "sm-admin",
            "client_secret": str(load_key(data_dir, KeyKind.SECRET)),
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def kid_of(token: str) -> str:
    return str(jws.extract_compact(token.encode()).protected["kid"])


def test_ca_pem_matches_the_fingerprint_in_the_keys(client: TestClient, data_dir: DataDir) -> None:
    response = client.get("/ca.pem")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-pem-file")
    assert response.content == data_dir.ca_cert.read_bytes()
    cert = x509.load_pem_x509_certificate(response.content)
    der = cert.public_bytes(Encoding.DER)
    fingerprint = hashlib.sha256(der).digest()
    assert load_key(data_dir, KeyKind.SECRET).fingerprint == fingerprint
    assert load_key(data_dir, KeyKind.ENROLLMENT).fingerprint == fingerprint


def test_jwks_lists_the_active_kid_and_no_private_parts(
    client: TestClient, data_dir: DataDir
) -> None:
    token = admin_token(client, data_dir)
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert [k["kid"] for k in keys] == [kid_of(token)]
    for key in keys:
        assert key["kty"] == "EC"
        assert key["alg"] == "ES256"
        assert "d" not in key


def test_rotation_publishes_both_keys_and_signs_with_the_new_one(
    client: TestClient, data_dir: DataDir
) -> None:
    old_token = admin_token(client, data_dir)
    new_kid = rotate_token_keys(data_dir)
    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]]
    assert kids == [kid_of(old_token), new_kid]
    new_token = admin_token(client, data_dir)
    assert kid_of(new_token) == new_kid
    verifier = TokenVerifier(data_dir)
    assert verifier.verify(old_token).subject == "sm-admin"
    assert verifier.verify(new_token).subject == "sm-admin"
