"""CoreApi.sign_in and call() against the real core."""

from __future__ import annotations

from pathlib import Path

import pytest

from sm_client.api import ApiError, CoreApi, PasswordLogin, SecretKeyLogin
from sm_shared.scopes import BUILTIN_ROLES

from .conftest import Core


async def test_signing_in_with_the_secret_key_gives_the_admin_scopes(admin: CoreApi) -> None:
    assert admin.signed_in
    assert admin.scopes == frozenset(BUILTIN_ROLES["admin"])
    assert admin.username is None
    page = await admin.call("GET", "/api/v1/nodes", params={"limit": 5, "q": None})
    assert page["total"] >= 1  # up's local agent


async def test_a_refused_call_is_an_api_error_with_the_problem(admin: CoreApi) -> None:
    with pytest.raises(ApiError) as caught:
        await admin.call("GET", "/api/v1/nodes/not-a-node")
    assert caught.value.status in (400, 404)
    assert caught.value.title
    assert caught.value.detail


async def test_calling_before_signing_in_is_refused(core: Core, tmp_path: Path) -> None:
    async with await CoreApi.bootstrap(core.api_url, core.secret_key, tmp_path / "ca.pem") as api:
        with pytest.raises(ApiError) as caught:
            await api.call("GET", "/api/v1/nodes")
        assert caught.value.status == 401
        with pytest.raises(ApiError) as wrong:
            await api.sign_in(PasswordLogin("nobody", "not the password"))
        assert wrong.value.code == "invalid_grant"
        assert not api.signed_in
        await api.sign_in(SecretKeyLogin(core.secret_key))
        assert api.may("nodes:read")


async def test_an_expiring_token_is_renewed_before_the_call(admin: CoreApi) -> None:
    first = await admin.access_token()
    object.__setattr__(first, "expires_at", 0.0)  # as if it ran out
    await admin.call("GET", "/api/v1/groups")
    renewed = await admin.access_token()
    assert renewed.token != first.token
    assert not renewed.expires_within(60)
