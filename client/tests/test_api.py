"""Token exchange through the typed API client, against the real registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from sm_client.api import ApiError, CoreApi
from sm_shared.access_keys import KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.scopes import BUILTIN_ROLES
from sm_shared.tokens import TokenVerifier


async def test_the_secret_key_buys_an_admin_token(
    registry_origin: str, data_dir: DataDir, tmp_path: Path
) -> None:
    secret = str(load_key(data_dir, KeyKind.SECRET))
    async with await CoreApi.bootstrap(registry_origin, secret, tmp_path / "ca.pem") as api:
        token = await api.token_from_secret_key(secret)
    assert token.scopes == frozenset(BUILTIN_ROLES["admin"])
    assert not token.expires_within(60)
    claims = TokenVerifier(data_dir).verify(token.token)
    assert claims.scopes == token.scopes
    assert token.header() == {"Authorization": f"Bearer {token.token}"}


async def test_a_wrong_secret_key_is_an_api_error(
    registry_origin: str, data_dir: DataDir, tmp_path: Path
) -> None:
    secret = str(load_key(data_dir, KeyKind.SECRET))
    forged = secret[:-6] + "AAAAAA"
    async with await CoreApi.bootstrap(registry_origin, secret, tmp_path / "ca.pem") as api:
        with pytest.raises(ApiError) as caught:
            await api.token_from_secret_key(forged)
    assert caught.value.status == 401
    assert caught.value.code == "invalid_client"


async def test_a_wrong_password_is_an_api_error(
    registry_origin: str, data_dir: DataDir, tmp_path: Path
) -> None:
    secret = str(load_key(data_dir, KeyKind.SECRET))
    async with await CoreApi.bootstrap(registry_origin, secret, tmp_path / "ca.pem") as api:
        with pytest.raises(ApiError) as caught:
            await api.token_from_password("nobody", "wrong password")
    assert caught.value.status == 400
    assert caught.value.code == "invalid_grant"


async def test_an_unreachable_core_is_an_api_error(data_dir: DataDir, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(data_dir.ca_cert.read_bytes())
    secret = str(load_key(data_dir, KeyKind.SECRET))
    async with await CoreApi.bootstrap("https://127.0.0.1:9", secret, ca_file) as api:
        with pytest.raises(ApiError) as caught:
            await api.token_from_secret_key(secret)
    assert caught.value.code == "unreachable"
